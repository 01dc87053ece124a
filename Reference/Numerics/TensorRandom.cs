using System.Numerics.Tensors;
using MoeNative.Interop;

namespace MoeNative.Reference;

/// <summary>
/// Deterministic, seeded random tensors (SplitMix64 streams + Box–Muller), independent of thread count: element i of
/// a stream depends only on (seed, stream, i). Used for random weights and test inputs.
/// </summary>
public static class TensorRandom
{
    /// <summary>Fills <paramref name="destination"/> with N(0, std²) samples of stream (<paramref name="seed"/>,
    /// <paramref name="stream"/>), rounded to <paramref name="roundTo"/>. Box–Muller on blocks of uniforms, vectorised
    /// with TensorPrimitives (float32 transcendental accuracy is ample for test data).</summary>
    public static void FillNormal(Span<float> destination, int seed, int stream, float std, ScalarType roundTo = ScalarType.Float32)
    {
        ulong state = Mix((ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ Mix((ulong)(uint)stream + 0x632BE59BD9B4E019UL));
        const int Block = 1024; // pairs per block
        Span<float> u1 = stackalloc float[Block], u2 = stackalloc float[Block], r = stackalloc float[Block], c = stackalloc float[Block];
        for (int start = 0; start < destination.Length; start += 2 * Block)
        {
            int pairs = Math.Min(Block, (destination.Length - start + 1) / 2);
            for (int i = 0; i < pairs; i++)
            {
                ulong bits = Next(ref state);
                u1[i] = ((uint)(bits >> 40) + 1) * (1f / (1 << 24));        // (0, 1]
                u2[i] = (uint)((bits >> 16) & 0xFF_FFFF) * (1f / (1 << 23)); // [0, 2): angle / π
            }
            Span<float> a = u1[..pairs], b = u2[..pairs], rr = r[..pairs], cc = c[..pairs];
            TensorPrimitives.Log(a, rr);
            TensorPrimitives.Multiply(rr, -2f * std * std, rr);
            TensorPrimitives.Sqrt(rr, rr);
            TensorPrimitives.CosPi(b, cc);
            TensorPrimitives.SinPi(b, b);
            Span<float> dst = destination[start..];
            int n = Math.Min(2 * pairs, dst.Length);
            for (int i = 0; i < pairs; i++)
            {
                dst[2 * i] = rr[i] * cc[i];
                if (2 * i + 1 < n) dst[2 * i + 1] = rr[i] * b[i];
            }
            Precision<float>.RoundInPlace(dst[..n], roundTo);
        }
    }

    /// <summary>A new array of N(0, std²) samples; large arrays are filled in parallel chunks of 2^20 (each its own stream).</summary>
    public static float[] Normal(long count, int seed, float std = 1f, ScalarType roundTo = ScalarType.Float32)
    {
        if (count < 0 || count > Array.MaxLength) throw new ArgumentOutOfRangeException(nameof(count), count, "Expected 0 ≤ count ≤ Array.MaxLength.");
        var result = new float[count];
        StoragePrecision.ParallelChunks(result.Length, (start, length) =>
            FillNormal(result.AsSpan(start, length), seed, start >> 20, std, roundTo));
        return result;
    }

    /// <summary>Uniform integers in [0, maxExclusive) from stream (<paramref name="seed"/>, <paramref name="stream"/>).</summary>
    public static int[] Integers(int count, int maxExclusive, int seed, int stream = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxExclusive);
        ulong state = Mix((ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ Mix((ulong)(uint)stream + 0x2545F4914F6CDD1DUL));
        var result = new int[count];
        for (int i = 0; i < count; i++) result[i] = (int)((Next(ref state) >> 33) % (ulong)maxExclusive);
        return result;
    }

    private static ulong Next(ref ulong state)
    {
        state += 0x9E3779B97F4A7C15UL;
        return Mix(state);
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
