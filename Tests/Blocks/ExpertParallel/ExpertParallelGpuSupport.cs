using System.Runtime.InteropServices;
using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Tests.Blocks.ExpertParallel;

/// <summary>Typed device buffers from float data and back, for the expert-parallel GPU tests (TElem = the dtype's
/// storage type: BFloat16, Half or float).</summary>
internal static class ExpertParallelGpuSupport
{
    public static DeviceBuffer<T> Upload<T>(CudaContext ctx, float[] values) where T : unmanaged
    {
        if (typeof(T) == typeof(BFloat16)) return (DeviceBuffer<T>)(object)DeviceBuffer<BFloat16>.FromHost(ctx, PrecisionConvert.ToBFloat16(values));
        if (typeof(T) == typeof(Half)) return (DeviceBuffer<T>)(object)DeviceBuffer<Half>.FromHost(ctx, PrecisionConvert.ToHalf(values));
        return (DeviceBuffer<T>)(object)DeviceBuffer<float>.FromHost(ctx, values);
    }

    public static float[] Download<T>(DeviceBuffer<T> buffer, long count) where T : unmanaged
    {
        T[] all = buffer.ToArray();
        Array.Resize(ref all, checked((int)count));
        return all switch
        {
            BFloat16[] b => PrecisionConvert.ToSingle(b),
            Half[] h => PrecisionConvert.ToSingle(h),
            float[] f => f,
            _ => throw new NotSupportedException(typeof(T).Name),
        };
    }

    /// <summary>The first <paramref name="count"/> elements' bytes.</summary>
    public static byte[] Bits<T>(DeviceBuffer<T> buffer, long count) where T : unmanaged =>
        MemoryMarshal.AsBytes(buffer.ToArray().AsSpan(0, checked((int)count))).ToArray();

    /// <summary>Gradient buffers, poisoned (0xFF: NaN in every float dtype), for T tokens and <paramref name="experts"/> experts.</summary>
    public static DeviceGradients<T> PoisonedGradients<T>(CudaContext ctx, MoeConfig c, int tokens, int experts) where T : unmanaged
    {
        var g = new DeviceGradients<T>(
            new DeviceBuffer<T>(ctx, Math.Max(1L, (long)tokens * c.HiddenSize)),
            new DeviceBuffer<T>(ctx, c.GateElements),
            new DeviceBuffer<T>(ctx, (long)experts * 2 * c.IntermediateSize * c.HiddenSize),
            new DeviceBuffer<T>(ctx, (long)experts * c.HiddenSize * c.IntermediateSize));
        foreach (DeviceBuffer<T> b in (DeviceBuffer<T>[])[g.HiddenStates, g.Gate, g.GateUpProj, g.DownProj]) b.FillBytes(0xFF);
        return g;
    }

    public static void Dispose<T>(DeviceGradients<T> g) where T : unmanaged
    {
        g.HiddenStates.Dispose();
        g.Gate.Dispose();
        g.GateUpProj.Dispose();
        g.DownProj.Dispose();
    }

    /// <summary>Routing for T tokens: k distinct experts per token drawn from <paramref name="pool"/>, and weights that
    /// sum to one per token (rounded to the dtype).</summary>
    public static (int[] Selected, float[] Weights) Routing(int tokens, int topK, int[] pool, int seed, ScalarType dtype)
    {
        var rng = new Random(seed);
        var sel = new int[tokens * topK];
        var w = new float[tokens * topK];
        for (int t = 0; t < tokens; t++)
        {
            int[] pick = pool.OrderBy(_ => rng.Next()).Take(topK).ToArray();
            double[] raw = pick.Select(_ => 0.1 + rng.NextDouble()).ToArray();
            for (int j = 0; j < topK; j++)
            {
                sel[t * topK + j] = pick[j];
                w[t * topK + j] = StoragePrecision.Round((float)(raw[j] / raw.Sum()), dtype);
            }
        }
        return (sel, w);
    }

    public static ScalarType Dtype(string name) => name switch
    {
        "bf16" => ScalarType.BFloat16,
        "fp16" => ScalarType.Float16,
        "fp32" => ScalarType.Float32,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "bf16, fp16 or fp32"),
    };
}
