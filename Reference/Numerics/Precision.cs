using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MoeNative.Interop;

namespace MoeNative.Reference;

/// <summary>
/// Rounding to a storage dtype, for the reference's generic compute type <typeparamref name="T"/> (float, or double
/// for the float64 finite-difference checks).
/// NOTE: <see cref="ScalarType.Float32"/> means "keep the compute precision": a no-op for float and for double (the
/// float64 path is the exact function). bf16/fp16 round to nearest even (via float for double inputs).
/// </summary>
internal static class Precision<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T Round(T value, ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => value,
        ScalarType.BFloat16 => T.CreateTruncating(BitConverter.Int32BitsToSingle(BFloat16.RoundToBits(float.CreateTruncating(value)) << 16)),
        ScalarType.Float16 => T.CreateTruncating((float)(Half)float.CreateTruncating(value)),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Expected Float32, Float16 or BFloat16."),
    };

    public static void RoundInPlace(Span<T> values, ScalarType dtype)
    {
        if (dtype == ScalarType.Float32) return;
        if (typeof(T) == typeof(float))
        {
            // Interop's vectorised conversions, bit for bit the scalar Round above.
            PrecisionConvert.RoundInPlace(dtype, MemoryMarshal.Cast<T, float>(values));
            return;
        }
        for (int i = 0; i < values.Length; i++) values[i] = Round(values[i], dtype);
    }

    /// <summary>True when every value is already representable in <paramref name="dtype"/>.</summary>
    public static bool IsRepresentable(ReadOnlySpan<T> values, ScalarType dtype)
    {
        if (dtype == ScalarType.Float32) return true;
        foreach (T v in values)
            if (!T.IsNaN(v) && Round(v, dtype) != v) return false;
        return true;
    }
}

/// <summary>Float-only conveniences over <see cref="Precision{T}"/>.</summary>
public static class StoragePrecision
{
    /// <summary>Rounds each value to <paramref name="dtype"/> and back to float (no-op for Float32).</summary>
    public static void RoundInPlace(Span<float> values, ScalarType dtype) => Precision<float>.RoundInPlace(values, dtype);

    /// <summary>One value rounded to <paramref name="dtype"/> and widened back.</summary>
    public static float Round(float value, ScalarType dtype) => Precision<float>.Round(value, dtype);

    /// <summary>A rounded copy (the same array when <paramref name="dtype"/> is Float32 or nothing changes).</summary>
    public static float[] RoundedCopy(float[] values, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (IsRepresentable(values, dtype)) return values;
        float[] copy = (float[])values.Clone();
        ParallelChunks(copy.Length, (start, length) => Precision<float>.RoundInPlace(copy.AsSpan(start, length), dtype));
        return copy;
    }

    /// <summary>True when every value is exactly representable in <paramref name="dtype"/> (NaN counts as representable).</summary>
    public static bool IsRepresentable(float[] values, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (dtype == ScalarType.Float32) return true;
        int bad = 0;
        ParallelChunks(values.Length, (start, length) =>
        {
            if (!Precision<float>.IsRepresentable(values.AsSpan(start, length), dtype)) Interlocked.Exchange(ref bad, 1);
        });
        return bad == 0;
    }

    internal static void ParallelChunks(int length, Action<int, int> body, int chunk = 1 << 20)
    {
        int chunks = (int)(((long)length + chunk - 1) / chunk);
        if (chunks <= 1) { if (length > 0) body(0, length); return; }
        Parallel.For(0, chunks, c =>
        {
            int start = c * chunk;
            body(start, Math.Min(chunk, length - start));
        });
    }
}
