using System.Globalization;
using System.Runtime.CompilerServices;

namespace MoeNative.Interop;

/// <summary>
/// bfloat16: sign, 8 exponent bits, 7 mantissa bits — the upper half of an IEEE binary32.
/// Conversion from <see cref="float"/> rounds to nearest, ties to even (what the tensor cores and PyTorch do);
/// NaN stays NaN (quiet), infinities and subnormals are kept. Widening to <see cref="float"/> is exact.
/// </summary>
[SkipLocalsInit]
public readonly struct BFloat16 : IEquatable<BFloat16>, IComparable<BFloat16>, ISpanFormattable
{
    /// <summary>The raw 16 bits.</summary>
    public readonly ushort Bits;

    private BFloat16(ushort bits) => Bits = bits;

    /// <summary>Reinterprets raw bits as a bfloat16.</summary>
    public static BFloat16 FromBits(ushort bits) => new(bits);

    public static BFloat16 Zero => new(0x0000);
    public static BFloat16 One => new(0x3F80);
    public static BFloat16 PositiveInfinity => new(0x7F80);
    public static BFloat16 NegativeInfinity => new(0xFF80);
    public static BFloat16 NaN => new(0x7FC0);
    /// <summary>Largest finite value, 3.3895314e38.</summary>
    public static BFloat16 MaxValue => new(0x7F7F);
    /// <summary>Smallest positive subnormal, 2^-133.</summary>
    public static BFloat16 Epsilon => new(0x0001);

    public bool IsNaN => (Bits & 0x7FFF) > 0x7F80;

    /// <summary>Round-to-nearest-even from binary32. NaN payloads are quieted (bit 6 of the mantissa set).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static explicit operator BFloat16(float value) => new(RoundToBits(value));

    /// <summary>Exact widening.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static explicit operator float(BFloat16 value) => BitConverter.Int32BitsToSingle(value.Bits << 16);

    /// <summary>Double → float (round to nearest even) → bfloat16. Note the double rounding: values within half
    /// a float ulp of a bf16 tie can land differently from a direct double→bf16 rounding.</summary>
    public static explicit operator BFloat16(double value) => (BFloat16)(float)value;

    public static explicit operator double(BFloat16 value) => (float)value;

    /// <summary>The bit pattern of <c>(BFloat16)value</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort RoundToBits(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFF_FFFF) > 0x7F80_0000)
            return (ushort)((bits >> 16) | 0x0040); // NaN: keep sign and upper payload, force quiet
        // Add 0x7FFF plus the lowest kept bit: carries into the kept half exactly when the dropped half is above
        // the midpoint, or at the midpoint with an odd kept half. Overflow rounds to infinity as it should.
        uint lsb = (bits >> 16) & 1;
        return (ushort)((bits + 0x7FFF + lsb) >> 16);
    }

    public bool Equals(BFloat16 other) => IsNaN ? false : (Bits == other.Bits || ((Bits | other.Bits) & 0x7FFF) == 0);
    public override bool Equals(object? obj) => obj is BFloat16 other && Equals(other);
    public override int GetHashCode() => ((float)this).GetHashCode();
    public int CompareTo(BFloat16 other) => ((float)this).CompareTo((float)other);
    public static bool operator ==(BFloat16 left, BFloat16 right) => left.Equals(right);
    public static bool operator !=(BFloat16 left, BFloat16 right) => !left.Equals(right);

    public override string ToString() => ((float)this).ToString(CultureInfo.InvariantCulture);
    public string ToString(string? format, IFormatProvider? formatProvider) => ((float)this).ToString(format, formatProvider);
    public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format, IFormatProvider? provider)
        => ((float)this).TryFormat(destination, out charsWritten, format, provider);
}
