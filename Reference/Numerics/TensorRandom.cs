namespace MoeNative.Reference;

/// <summary>
/// Deterministic, seeded random tensors (SplitMix64 streams + Box–Muller), independent of thread count: element i of
/// a stream depends only on (seed, stream, i). Used for random weights and test inputs.
/// </summary>
public static class TensorRandom
{
    /// <summary>Fills <paramref name="destination"/> with N(0, std²) samples of stream (<paramref name="seed"/>,
    /// <paramref name="stream"/>), rounded to <paramref name="roundTo"/>.</summary>
    public static void FillNormal(Span<float> destination, int seed, int stream, float std, ScalarType roundTo = ScalarType.Float32)
    {
        ulong state = Mix((ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ Mix((ulong)(uint)stream + 0x632BE59BD9B4E019UL));
        for (int i = 0; i < destination.Length; i += 2)
        {
            // Box–Muller: two uniforms in (0,1] and [0,1) -> two normals.
            double u1 = ((Next(ref state) >> 11) + 1) * (1.0 / (1UL << 53));
            double u2 = (Next(ref state) >> 11) * (1.0 / (1UL << 53));
            double r = Math.Sqrt(-2.0 * Math.Log(u1)) * std;
            destination[i] = StoragePrecision.Round((float)(r * Math.Cos(2 * Math.PI * u2)), roundTo);
            if (i + 1 < destination.Length) destination[i + 1] = StoragePrecision.Round((float)(r * Math.Sin(2 * Math.PI * u2)), roundTo);
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
