using MoeNative.Interop;

namespace MoeNative.Tests.Interop;

/// <summary>The vectorised span conversions equal the scalar ones (BFloat16's operators, the BCL's Half
/// operators) for every length class around the vector widths and for special values in every lane.</summary>
[TestClass]
public sealed class PrecisionConvertTests
{
    private static readonly uint[] SpecialBits =
    [
        0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF,
        0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FA00000, 0xFFFFFFFF, 0x3F808000,
        0x3F818000, 0x3F808001, 0x3F807FFF, 0x7F7F8000,
        // fp16 boundaries: max finite 65504, its tie (65520) to infinity, smallest normal 2^-14 and the ties of
        // the subnormal range (2^-25 tie to 0, 3·2^-25 tie to 2·2^-24), fp16 tie even/odd at 1.0.
        0x477FE000, 0x477FF000, 0x477FEFFF, 0x38800000, 0x387FFFFF, 0x33000000, 0x33000001, 0x33C00000,
        0x3F801000, 0x3F803000, 0x3F801001, 0xB3C00000, 0x387FC000, 0x33800000,
    ];

    private static float[] Inputs(int length, int seed)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int i = 0; i < length; i++)
        {
            values[i] = (i % 3) switch
            {
                0 => BitConverter.UInt32BitsToSingle(SpecialBits[random.Next(SpecialBits.Length)]),
                1 => BitConverter.UInt32BitsToSingle((uint)random.NextInt64(0, 1L << 32)),
                _ => (float)(random.NextDouble() * 2 - 1) * MathF.Pow(2, random.Next(-30, 20)),
            };
        }
        return values;
    }

    private static uint Bits(float f) => BitConverter.SingleToUInt32Bits(f);

    [TestMethod]
    [DataRow(0)] [DataRow(1)] [DataRow(3)] [DataRow(4)] [DataRow(7)] [DataRow(8)] [DataRow(9)] [DataRow(15)]
    [DataRow(16)] [DataRow(17)] [DataRow(31)] [DataRow(33)] [DataRow(100)] [DataRow(1027)] [DataRow(65536 + 5)]
    public void FloatToBFloat16_EqualsScalar(int length)
    {
        float[] source = Inputs(length, 1000 + length);
        var actual = new BFloat16[length + 1];
        actual[length] = BFloat16.FromBits(0x1234); // sentinel: must not be written
        PrecisionConvert.ToBFloat16(source, actual.AsSpan(0, length));
        for (int i = 0; i < length; i++)
            Assert.AreEqual(((BFloat16)source[i]).Bits, actual[i].Bits, $"index {i}, float 0x{Bits(source[i]):X8}");
        Assert.AreEqual((ushort)0x1234, actual[length].Bits, "wrote past the destination length");
        CollectionAssert.AreEqual(actual[..length].Select(b => b.Bits).ToArray(), PrecisionConvert.ToBFloat16(source).Select(b => b.Bits).ToArray());
    }

    [TestMethod]
    [DataRow(0)] [DataRow(1)] [DataRow(7)] [DataRow(8)] [DataRow(15)] [DataRow(16)] [DataRow(17)] [DataRow(33)] [DataRow(1027)]
    public void BFloat16ToFloat_EqualsScalar(int length)
    {
        var random = new Random(length);
        BFloat16[] source = Enumerable.Range(0, length).Select(_ => BFloat16.FromBits((ushort)random.Next(0x10000))).ToArray();
        float[] actual = PrecisionConvert.ToSingle(source);
        for (int i = 0; i < length; i++)
            Assert.AreEqual(Bits((float)source[i]), Bits(actual[i]), $"index {i}, bf16 0x{source[i].Bits:X4}");
    }

    [TestMethod]
    public void BFloat16ToFloat_AllBitPatterns_EqualsScalar()
    {
        BFloat16[] source = Enumerable.Range(0, 0x10000).Select(b => BFloat16.FromBits((ushort)b)).ToArray();
        float[] actual = PrecisionConvert.ToSingle(source);
        int mismatches = Enumerable.Range(0, 0x10000).Count(i => Bits(actual[i]) != Bits((float)source[i]));
        Assert.AreEqual(0, mismatches);
    }

    [TestMethod]
    [DataRow(0)] [DataRow(1)] [DataRow(7)] [DataRow(8)] [DataRow(15)] [DataRow(16)] [DataRow(17)] [DataRow(33)]
    [DataRow(1027)] [DataRow(65536 + 5)]
    public void FloatToHalf_EqualsScalar(int length)
    {
        float[] source = Inputs(length, 2000 + length);
        Half[] actual = PrecisionConvert.ToHalf(source);
        for (int i = 0; i < length; i++)
        {
            Half expected = (Half)source[i];
            if (Half.IsNaN(expected))
                Assert.IsTrue(Half.IsNaN(actual[i]) && (BitConverter.HalfToUInt16Bits(actual[i]) & 0x8000) == (BitConverter.HalfToUInt16Bits(expected) & 0x8000),
                    $"index {i}: NaN 0x{Bits(source[i]):X8} -> 0x{BitConverter.HalfToUInt16Bits(actual[i]):X4}");
            else
                Assert.AreEqual(BitConverter.HalfToUInt16Bits(expected), BitConverter.HalfToUInt16Bits(actual[i]), $"index {i}, float 0x{Bits(source[i]):X8}");
        }
    }

    /// <summary>Every fp16 value and the floats around every fp16 rounding tie.</summary>
    [TestMethod]
    public void FloatToHalf_AroundEveryFp16Tie_EqualsScalar()
    {
        var source = new List<float>();
        foreach (int sign in (int[])[0, 0x8000])
        {
            for (int h = 0; h < 0x7BFF; h++) // every finite magnitude below the largest, and its successor
            {
                float v = (float)BitConverter.UInt16BitsToHalf((ushort)(h | sign));
                float next = (float)BitConverter.UInt16BitsToHalf((ushort)((h + 1) | sign));
                float tie = (float)(((double)v + next) / 2); // exact: 12 significant bits
                source.AddRange([v, tie, MathF.BitDecrement(tie), MathF.BitIncrement(tie)]);
            }
        }
        source.AddRange([65504f, 65520f, MathF.BitDecrement(65520f), MathF.BitIncrement(65520f), -65520f]);
        float[] input = source.ToArray();
        Half[] actual = PrecisionConvert.ToHalf(input);
        var failures = new List<string>();
        for (int i = 0; i < input.Length; i++)
        {
            ushort expected = BitConverter.HalfToUInt16Bits((Half)input[i]), got = BitConverter.HalfToUInt16Bits(actual[i]);
            if (expected != got && failures.Count < 10)
                failures.Add($"float 0x{Bits(input[i]):X8}: got 0x{got:X4}, expected 0x{expected:X4}");
        }
        Assert.IsEmpty(failures, string.Join("; ", failures));
    }

    [TestMethod]
    public void HalfToFloat_AllBitPatterns_EqualsScalar()
    {
        Half[] source = Enumerable.Range(0, 0x10000).Select(h => BitConverter.UInt16BitsToHalf((ushort)h)).ToArray();
        float[] actual = PrecisionConvert.ToSingle(source);
        var failures = new List<string>();
        for (int i = 0; i < source.Length; i++)
        {
            float expected = (float)source[i];
            bool ok = float.IsNaN(expected) ? float.IsNaN(actual[i]) : Bits(expected) == Bits(actual[i]);
            if (!ok && failures.Count < 10)
                failures.Add($"half 0x{i:X4}: got 0x{Bits(actual[i]):X8}, expected 0x{Bits(expected):X8}");
        }
        Assert.IsEmpty(failures, string.Join("; ", failures));
    }

    [TestMethod]
    [DataRow(ScalarType.Float32, 37)]
    [DataRow(ScalarType.BFloat16, 37)]
    [DataRow(ScalarType.Float16, 37)]
    [DataRow(ScalarType.BFloat16, 4099)]
    [DataRow(ScalarType.Float16, 4099)]
    public void RoundInPlace_EqualsScalarRoundTrip(ScalarType type, int length)
    {
        float[] source = Inputs(length, 3000 + length);
        float[] values = (float[])source.Clone();
        PrecisionConvert.RoundInPlace(type, values);
        for (int i = 0; i < length; i++)
        {
            float expected = type switch
            {
                ScalarType.Float32 => source[i],
                ScalarType.BFloat16 => (float)(BFloat16)source[i],
                _ => (float)(Half)source[i],
            };
            if (float.IsNaN(expected))
                Assert.IsTrue(float.IsNaN(values[i]), $"index {i}: NaN lost");
            else
                Assert.AreEqual(Bits(expected), Bits(values[i]), $"index {i}, {type}, float 0x{Bits(source[i]):X8}");
        }
    }

    [TestMethod]
    public void ShortDestination_Throws()
    {
        Assert.ThrowsExactly<ArgumentException>(() => PrecisionConvert.ToBFloat16(new float[5], new BFloat16[4]));
        Assert.ThrowsExactly<ArgumentException>(() => PrecisionConvert.ToHalf(new float[5], new Half[4]));
        Assert.ThrowsExactly<ArgumentException>(() => PrecisionConvert.ToSingle(new BFloat16[5], new float[4]));
        Assert.ThrowsExactly<ArgumentException>(() => PrecisionConvert.ToSingle(new Half[5], new float[4]));
    }
}
