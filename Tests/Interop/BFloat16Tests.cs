using MoeNative.Interop;

namespace MoeNative.Tests.Interop;

/// <summary>
/// BFloat16 against an independent reference: the exact value of every float is placed between its two bf16
/// neighbours in double arithmetic (no bit tricks), and the nearer one wins, ties to the even mantissa.
/// </summary>
[TestClass]
public sealed class BFloat16Tests
{
    // ---- the reference -------------------------------------------------------------------------------------

    /// <summary>Exact value of a bf16 pattern from its fields (sign, 8-bit exponent, 7-bit mantissa), in double.</summary>
    internal static double ReferenceValue(ushort bits)
    {
        int sign = bits >> 15, exponent = (bits >> 7) & 0xFF, mantissa = bits & 0x7F;
        double magnitude = exponent switch
        {
            0 => Math.ScaleB(mantissa, -133),                       // subnormal: m · 2^(1-127-7)
            0xFF => mantissa == 0 ? double.PositiveInfinity : double.NaN,
            _ => Math.ScaleB(128 + mantissa, exponent - 127 - 7),   // (1 + m/128) · 2^(e-127)
        };
        return sign == 1 ? -magnitude : magnitude;
    }

    /// <summary>Round-to-nearest-even of a non-NaN float to bf16 bits, by comparing distances in double.</summary>
    internal static ushort ReferenceRound(float value)
    {
        double x = value; // exact
        ushort signBit = (ushort)(double.IsNegative(x) ? 0x8000 : 0);
        double a = Math.Abs(x);
        if (double.IsInfinity(a))
            return (ushort)(signBit | 0x7F80);
        // Largest bf16 magnitude <= a, found by search over the exponent (the only bit pattern knowledge used is
        // that magnitudes are ordered like their codes), then the next code up. Code 0x7F80 stands for 2^128,
        // the first value past the largest finite one, so rounding to it means overflow to infinity.
        int lo = 0, hi = 0x7F80;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (Magnitude(mid) <= a) lo = mid; else hi = mid - 1;
        }
        int below = lo, above = Math.Min(lo + 1, 0x7F80);
        double dBelow = a - Magnitude(below), dAbove = Magnitude(above) - a;
        int chosen = dBelow < dAbove ? below : dAbove < dBelow ? above : (below % 2 == 0 ? below : above);
        return (ushort)(signBit | chosen);

        static double Magnitude(int code) => code == 0x7F80 ? Math.ScaleB(1.0, 128) : ReferenceValue((ushort)code);
    }

    // ---- all 65,536 bf16 values ---------------------------------------------------------------------------

    [TestMethod]
    public void Widening_AllBitPatterns_EqualsFieldFormula()
    {
        var failures = new List<string>();
        for (int b = 0; b <= 0xFFFF; b++)
        {
            double expected = ReferenceValue((ushort)b);
            float actual = (float)BFloat16.FromBits((ushort)b);
            bool ok = double.IsNaN(expected) ? float.IsNaN(actual) : actual == expected && (double.IsNegative(expected) == float.IsNegative(actual));
            if (!ok && failures.Count < 10)
                failures.Add($"0x{b:X4}: expected {expected:R}, got {actual:R}");
        }
        Assert.IsEmpty(failures, string.Join("; ", failures));
    }

    [TestMethod]
    public void RoundTrip_AllBitPatterns_KeepsBitsAndQuietsNaN()
    {
        var failures = new List<string>();
        for (int b = 0; b <= 0xFFFF; b++)
        {
            var bf = BFloat16.FromBits((ushort)b);
            ushort back = ((BFloat16)(float)bf).Bits;
            bool isNaN = (b & 0x7FFF) > 0x7F80;
            ushort expected = isNaN ? (ushort)(b | 0x0040) : (ushort)b;
            if (back != expected && failures.Count < 10)
                failures.Add($"0x{b:X4} -> 0x{back:X4}, expected 0x{expected:X4}");
            if (bf.IsNaN != isNaN && failures.Count < 10)
                failures.Add($"0x{b:X4}: IsNaN {bf.IsNaN}");
        }
        Assert.IsEmpty(failures, string.Join("; ", failures));
    }

    /// <summary>For every bf16 code c (finite, both signs): the floats at c exactly, one float ulp above, just
    /// below the tie, the tie, just above the tie and the last float before the next code, against the reference.</summary>
    [TestMethod]
    public void Rounding_AroundEveryTieOfEveryCode_MatchesReference()
    {
        uint[] offsets = [0x0000, 0x0001, 0x7FFE, 0x7FFF, 0x8000, 0x8001, 0x8002, 0xFFFF];
        var failures = new List<string>();
        int checkedCount = 0;
        for (uint code = 0; code <= 0xFFFF; code++)
        {
            if ((code & 0x7F80) == 0x7F80)
                continue; // inf/NaN codes: covered by the data rows
            foreach (uint offset in offsets)
            {
                uint bits = (code << 16) | offset;
                float f = BitConverter.UInt32BitsToSingle(bits);
                ushort expected = ReferenceRound(f);
                ushort actual = ((BFloat16)f).Bits;
                checkedCount++;
                if (actual != expected && failures.Count < 10)
                    failures.Add($"float 0x{bits:X8}: got 0x{actual:X4}, expected 0x{expected:X4}");
            }
        }
        Assert.AreEqual(8 * (65536 - 2 * 128), checkedCount); // all codes but the 2·128 inf/NaN ones
        Assert.IsEmpty(failures, string.Join("; ", failures));
    }

    // ---- named boundary classes, expected bits written by hand -------------------------------------------------

    [TestMethod]
    [DataRow(0x3F800000u, (ushort)0x3F80, DisplayName = "1.0 exact")]
    [DataRow(0x3F808000u, (ushort)0x3F80, DisplayName = "tie, even kept half stays")]
    [DataRow(0x3F818000u, (ushort)0x3F82, DisplayName = "tie, odd kept half rounds up to even")]
    [DataRow(0x3F807FFFu, (ushort)0x3F80, DisplayName = "just below tie rounds down")]
    [DataRow(0x3F808001u, (ushort)0x3F81, DisplayName = "just above tie rounds up")]
    [DataRow(0x3FFF8000u, (ushort)0x4000, DisplayName = "tie carries into the exponent")]
    [DataRow(0xBF818000u, (ushort)0xBF82, DisplayName = "negative tie, odd")]
    [DataRow(0xBF808001u, (ushort)0xBF81, DisplayName = "negative just above tie")]
    [DataRow(0x7F7F0000u, (ushort)0x7F7F, DisplayName = "max finite bf16 exact")]
    [DataRow(0x7F7F7FFFu, (ushort)0x7F7F, DisplayName = "below max-finite tie stays finite")]
    [DataRow(0x7F7F8000u, (ushort)0x7F80, DisplayName = "max-finite tie (odd) overflows to +inf")]
    [DataRow(0x7F7FFFFFu, (ushort)0x7F80, DisplayName = "float max overflows to +inf")]
    [DataRow(0xFF7FFFFFu, (ushort)0xFF80, DisplayName = "-float max overflows to -inf")]
    [DataRow(0x7F800000u, (ushort)0x7F80, DisplayName = "+inf")]
    [DataRow(0xFF800000u, (ushort)0xFF80, DisplayName = "-inf")]
    [DataRow(0x00000000u, (ushort)0x0000, DisplayName = "+0")]
    [DataRow(0x80000000u, (ushort)0x8000, DisplayName = "-0")]
    [DataRow(0x00000001u, (ushort)0x0000, DisplayName = "smallest float subnormal rounds to +0")]
    [DataRow(0x80000001u, (ushort)0x8000, DisplayName = "smallest negative float subnormal rounds to -0")]
    [DataRow(0x00008000u, (ushort)0x0000, DisplayName = "subnormal tie, even -> 0")]
    [DataRow(0x00018000u, (ushort)0x0002, DisplayName = "subnormal tie, odd -> up")]
    [DataRow(0x00010000u, (ushort)0x0001, DisplayName = "smallest bf16 subnormal exact")]
    [DataRow(0x007FFFFFu, (ushort)0x0080, DisplayName = "largest float subnormal rounds to smallest normal")]
    [DataRow(0x007F7FFFu, (ushort)0x007F, DisplayName = "largest bf16 subnormal neighbourhood")]
    [DataRow(0x7FC00000u, (ushort)0x7FC0, DisplayName = "quiet NaN")]
    [DataRow(0xFFC00000u, (ushort)0xFFC0, DisplayName = "negative quiet NaN")]
    [DataRow(0x7F800001u, (ushort)0x7FC0, DisplayName = "signalling NaN with low payload stays NaN")]
    [DataRow(0x7FA00000u, (ushort)0x7FE0, DisplayName = "signalling NaN, upper payload kept and quieted")]
    [DataRow(0x7FFFFFFFu, (ushort)0x7FFF, DisplayName = "NaN with all payload bits does not carry into sign")]
    [DataRow(0xFF800001u, (ushort)0xFFC0, DisplayName = "negative signalling NaN")]
    public void Rounding_BoundaryClass_GivesHandWrittenBits(uint floatBits, ushort expectedBits)
    {
        float f = BitConverter.UInt32BitsToSingle(floatBits);
        Assert.AreEqual(expectedBits, ((BFloat16)f).Bits, $"float 0x{floatBits:X8}");
        Assert.AreEqual(expectedBits, BFloat16.RoundToBits(f), $"RoundToBits 0x{floatBits:X8}");
        if (!float.IsNaN(f))
            Assert.AreEqual(expectedBits, ReferenceRound(f), "the reference itself disagrees with the hand-written bits");
    }

    [TestMethod]
    public void Rounding_RandomFloats_MatchesReference()
    {
        var random = new Random(20261126);
        var failures = new List<string>();
        for (int i = 0; i < 200_000; i++)
        {
            uint bits = (uint)random.NextInt64(0, 1L << 32);
            float f = BitConverter.UInt32BitsToSingle(bits);
            if (float.IsNaN(f))
                continue;
            ushort expected = ReferenceRound(f), actual = ((BFloat16)f).Bits;
            if (expected != actual && failures.Count < 10)
                failures.Add($"0x{bits:X8}: got 0x{actual:X4}, expected 0x{expected:X4}");
        }
        Assert.IsEmpty(failures, string.Join("; ", failures));
    }

    [TestMethod]
    public void Equality_FollowsIeee()
    {
        Assert.IsTrue(BFloat16.FromBits(0x0000) == BFloat16.FromBits(0x8000), "+0 == -0");
        Assert.IsFalse(BFloat16.NaN == BFloat16.NaN, "NaN != NaN");
        Assert.AreEqual(BFloat16.One, (BFloat16)1.0f);
        Assert.AreEqual(3.3895314e38f, (float)BFloat16.MaxValue);
    }
}
