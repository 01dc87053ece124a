using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace MoeNative.Interop;

/// <summary>
/// Span conversions between <see cref="float"/> and the 16-bit storage types, vectorised with the BCL's
/// <see cref="Vector256"/>/<see cref="Vector128"/> (scalar tail). Results equal the scalar conversions bit for
/// bit: <see cref="BFloat16"/>'s explicit operators and <see cref="Half"/>'s (round to nearest even, overflow to
/// infinity, subnormals kept, NaN stays NaN with the sign and upper payload, quiet bit set).
/// Destination spans must be at least as long as the source (<see cref="ArgumentException"/>); the source and the
/// destination may be the same memory only in <see cref="RoundInPlace"/>.
/// </summary>
public static class PrecisionConvert
{
    // ---- float -> bf16 ------------------------------------------------------------------------------------

    /// <summary>destination[i] = (BFloat16)source[i].</summary>
    public static void ToBFloat16(ReadOnlySpan<float> source, Span<BFloat16> destination)
    {
        CheckLengths(source.Length, destination.Length);
        ReadOnlySpan<uint> src = MemoryMarshal.Cast<float, uint>(source);
        Span<ushort> dst = MemoryMarshal.Cast<BFloat16, ushort>(destination);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= src.Length - 16; i += 16)
            {
                Vector256<uint> lo = Vector256.Create(src.Slice(i, 8));
                Vector256<uint> hi = Vector256.Create(src.Slice(i + 8, 8));
                Vector256.Narrow(Bf16Bits(lo), Bf16Bits(hi)).CopyTo(dst.Slice(i, 16));
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= src.Length - 8; i += 8)
            {
                Vector128<uint> lo = Vector128.Create(src.Slice(i, 4));
                Vector128<uint> hi = Vector128.Create(src.Slice(i + 4, 4));
                Vector128.Narrow(Bf16Bits(lo), Bf16Bits(hi)).CopyTo(dst.Slice(i, 8));
            }
        }
        for (; i < src.Length; i++)
            dst[i] = BFloat16.RoundToBits(BitConverter.UInt32BitsToSingle(src[i]));
    }

    /// <summary>New array: (BFloat16)source[i].</summary>
    public static BFloat16[] ToBFloat16(ReadOnlySpan<float> source)
    {
        var result = new BFloat16[source.Length];
        ToBFloat16(source, result);
        return result;
    }

    // Same arithmetic as BFloat16.RoundToBits, lane-wise; result in the low 16 bits of each lane.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Bf16Bits(Vector256<uint> bits)
    {
        Vector256<uint> isNaN = Vector256.GreaterThan(bits & Vector256.Create(0x7FFF_FFFFu), Vector256.Create(0x7F80_0000u));
        Vector256<uint> lsb = Vector256.ShiftRightLogical(bits, 16) & Vector256<uint>.One;
        Vector256<uint> rounded = Vector256.ShiftRightLogical(bits + Vector256.Create(0x7FFFu) + lsb, 16);
        Vector256<uint> quiet = Vector256.ShiftRightLogical(bits, 16) | Vector256.Create(0x0040u);
        return Vector256.ConditionalSelect(isNaN, quiet, rounded);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<uint> Bf16Bits(Vector128<uint> bits)
    {
        Vector128<uint> isNaN = Vector128.GreaterThan(bits & Vector128.Create(0x7FFF_FFFFu), Vector128.Create(0x7F80_0000u));
        Vector128<uint> lsb = Vector128.ShiftRightLogical(bits, 16) & Vector128<uint>.One;
        Vector128<uint> rounded = Vector128.ShiftRightLogical(bits + Vector128.Create(0x7FFFu) + lsb, 16);
        Vector128<uint> quiet = Vector128.ShiftRightLogical(bits, 16) | Vector128.Create(0x0040u);
        return Vector128.ConditionalSelect(isNaN, quiet, rounded);
    }

    // ---- bf16 -> float ------------------------------------------------------------------------------------

    /// <summary>destination[i] = (float)source[i] (exact).</summary>
    public static void ToSingle(ReadOnlySpan<BFloat16> source, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        ReadOnlySpan<ushort> src = MemoryMarshal.Cast<BFloat16, ushort>(source);
        Span<uint> dst = MemoryMarshal.Cast<float, uint>(destination);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= src.Length - 16; i += 16)
            {
                (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.Create(src.Slice(i, 16)));
                Vector256.ShiftLeft(lo, 16).CopyTo(dst.Slice(i, 8));
                Vector256.ShiftLeft(hi, 16).CopyTo(dst.Slice(i + 8, 8));
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= src.Length - 8; i += 8)
            {
                (Vector128<uint> lo, Vector128<uint> hi) = Vector128.Widen(Vector128.Create(src.Slice(i, 8)));
                Vector128.ShiftLeft(lo, 16).CopyTo(dst.Slice(i, 4));
                Vector128.ShiftLeft(hi, 16).CopyTo(dst.Slice(i + 4, 4));
            }
        }
        for (; i < src.Length; i++)
            dst[i] = (uint)src[i] << 16;
    }

    /// <summary>New array: (float)source[i].</summary>
    public static float[] ToSingle(ReadOnlySpan<BFloat16> source)
    {
        var result = new float[source.Length];
        ToSingle(source, result);
        return result;
    }

    // ---- float -> fp16 ------------------------------------------------------------------------------------

    /// <summary>destination[i] = (Half)source[i].</summary>
    public static void ToHalf(ReadOnlySpan<float> source, Span<Half> destination)
    {
        CheckLengths(source.Length, destination.Length);
        ReadOnlySpan<uint> src = MemoryMarshal.Cast<float, uint>(source);
        Span<ushort> dst = MemoryMarshal.Cast<Half, ushort>(destination);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= src.Length - 16; i += 16)
            {
                Vector256<uint> lo = Vector256.Create(src.Slice(i, 8));
                Vector256<uint> hi = Vector256.Create(src.Slice(i + 8, 8));
                Vector256.Narrow(HalfBits(lo), HalfBits(hi)).CopyTo(dst.Slice(i, 16));
            }
        }
        for (; i < src.Length; i++)
            destination[i] = (Half)BitConverter.UInt32BitsToSingle(src[i]);
    }

    /// <summary>New array: (Half)source[i].</summary>
    public static Half[] ToHalf(ReadOnlySpan<float> source)
    {
        var result = new Half[source.Length];
        ToHalf(source, result);
        return result;
    }

    /// <summary>binary32 → binary16 bits, round to nearest even, lane-wise.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> HalfBits(Vector256<uint> bits)
    {
        Vector256<uint> sign = Vector256.ShiftRightLogical(bits, 16) & Vector256.Create(0x8000u);
        Vector256<uint> abs = bits & Vector256.Create(0x7FFF_FFFFu);

        // Normal results (|x| >= 2^-14): rebias the exponent (127 -> 15: subtract 112 << 23), then drop 13
        // mantissa bits with round-half-even; a carry out of the top exponent gives 0x7C00 (infinity) or more.
        Vector256<uint> rebiased = abs - Vector256.Create(0x3800_0000u);
        Vector256<uint> lsb = Vector256.ShiftRightLogical(rebiased, 13) & Vector256<uint>.One;
        Vector256<uint> normal = Vector256.ShiftRightLogical(rebiased + Vector256.Create(0x0FFFu) + lsb, 13);
        normal = Vector256.Min(normal, Vector256.Create(0x7C00u)); // overflow and float infinity -> infinity

        // Subnormal results (|x| < 2^-14): |x| + 0.5f is computed by the FPU with round-half-even; 0.5 has an ulp
        // of 2^-24, the fp16 subnormal step, so the low mantissa bits of the sum are the rounded fp16 bits
        // (up to 0x400 = the smallest normal, which is the right carry).
        Vector256<float> sum = abs.AsSingle() + Vector256.Create(0.5f);
        Vector256<uint> subnormal = sum.AsUInt32() - Vector256.Create(0x3F00_0000u);

        Vector256<uint> isSubnormal = Vector256.LessThan(abs, Vector256.Create(0x3880_0000u));
        Vector256<uint> isNaN = Vector256.GreaterThan(abs, Vector256.Create(0x7F80_0000u));
        Vector256<uint> nan = Vector256.Create(0x7E00u) | (Vector256.ShiftRightLogical(abs, 13) & Vector256.Create(0x03FFu));
        Vector256<uint> magnitude = Vector256.ConditionalSelect(isSubnormal, subnormal, normal);
        magnitude = Vector256.ConditionalSelect(isNaN, nan, magnitude);
        return sign | magnitude;
    }

    // ---- fp16 -> float ------------------------------------------------------------------------------------

    /// <summary>destination[i] = (float)source[i] (exact).</summary>
    public static void ToSingle(ReadOnlySpan<Half> source, Span<float> destination)
    {
        CheckLengths(source.Length, destination.Length);
        ReadOnlySpan<ushort> src = MemoryMarshal.Cast<Half, ushort>(source);
        Span<uint> dst = MemoryMarshal.Cast<float, uint>(destination);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= src.Length - 16; i += 16)
            {
                (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.Create(src.Slice(i, 16)));
                SingleBits(lo).CopyTo(dst.Slice(i, 8));
                SingleBits(hi).CopyTo(dst.Slice(i + 8, 8));
            }
        }
        for (; i < src.Length; i++)
            destination[i] = (float)source[i];
    }

    /// <summary>New array: (float)source[i].</summary>
    public static float[] ToSingle(ReadOnlySpan<Half> source)
    {
        var result = new float[source.Length];
        ToSingle(source, result);
        return result;
    }

    /// <summary>binary16 bits (low 16 of each lane) → binary32 bits, exact.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> SingleBits(Vector256<uint> h)
    {
        Vector256<uint> sign = Vector256.ShiftLeft(h & Vector256.Create(0x8000u), 16);
        Vector256<uint> abs = h & Vector256.Create(0x7FFFu);
        Vector256<uint> exponent = abs & Vector256.Create(0x7C00u);
        Vector256<uint> mantissa = abs & Vector256.Create(0x03FFu);

        Vector256<uint> normal = Vector256.ShiftLeft(abs, 13) + Vector256.Create(0x3800_0000u);        // rebias 15 -> 127
        Vector256<uint> subnormal = (Vector256.ConvertToSingle(mantissa.AsInt32()) * Vector256.Create(1.0f / 16777216f)).AsUInt32(); // m * 2^-24, exact
        // Infinity keeps a zero mantissa; NaN keeps its payload and gets the quiet bit, as (float)(Half) does.
        Vector256<uint> quietBit = ~Vector256.Equals(mantissa, Vector256<uint>.Zero) & Vector256.Create(0x0040_0000u);
        Vector256<uint> special = Vector256.Create(0x7F80_0000u) | Vector256.ShiftLeft(mantissa, 13) | quietBit;

        Vector256<uint> isZeroExp = Vector256.Equals(exponent, Vector256<uint>.Zero);
        Vector256<uint> isMaxExp = Vector256.Equals(exponent, Vector256.Create(0x7C00u));
        Vector256<uint> magnitude = Vector256.ConditionalSelect(isZeroExp, subnormal, normal);
        magnitude = Vector256.ConditionalSelect(isMaxExp, special, magnitude);
        return sign | magnitude;
    }

    // ---- rounding to a storage type -----------------------------------------------------------------------

    /// <summary>values[i] = (float)(storage)values[i]: rounds every value to <paramref name="type"/>'s precision
    /// and widens it back (a no-op for <see cref="ScalarType.Float32"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Unknown <paramref name="type"/>.</exception>
    public static void RoundInPlace(ScalarType type, Span<float> values)
    {
        switch (type)
        {
            case ScalarType.Float32:
                return;
            case ScalarType.BFloat16:
                RoundToBFloat16InPlace(values);
                return;
            case ScalarType.Float16:
                RoundToHalfInPlace(values);
                return;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, "Expected Float32, Float16 or BFloat16.");
        }
    }

    private static void RoundToBFloat16InPlace(Span<float> values)
    {
        Span<uint> bits = MemoryMarshal.Cast<float, uint>(values);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= bits.Length - 8; i += 8)
                Vector256.ShiftLeft(Bf16Bits(Vector256.Create(bits.Slice(i, 8))), 16).CopyTo(bits.Slice(i, 8));
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= bits.Length - 4; i += 4)
                Vector128.ShiftLeft(Bf16Bits(Vector128.Create(bits.Slice(i, 4))), 16).CopyTo(bits.Slice(i, 4));
        }
        for (; i < bits.Length; i++)
            bits[i] = (uint)BFloat16.RoundToBits(BitConverter.UInt32BitsToSingle(bits[i])) << 16;
    }

    private static void RoundToHalfInPlace(Span<float> values)
    {
        Span<uint> bits = MemoryMarshal.Cast<float, uint>(values);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= bits.Length - 8; i += 8)
                SingleBits(HalfBits(Vector256.Create(bits.Slice(i, 8)))).CopyTo(bits.Slice(i, 8));
        }
        for (; i < values.Length; i++)
            values[i] = (float)(Half)values[i];
    }

    private static void CheckLengths(int sourceLength, int destinationLength)
    {
        if (destinationLength < sourceLength)
            throw new ArgumentException($"Destination holds {destinationLength} elements; the source has {sourceLength}.", "destination");
    }
}
