using System.Buffers.Binary;
using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx;

/// <summary>Host-side storage-dtype helpers for the small-kernel GPU tests (independent of the code under test).</summary>
internal static class HostDtype
{
    public static int Size(ScalarType t) => t == ScalarType.Float32 ? 4 : 2;

    /// <summary>Round to the storage dtype (round to nearest even) and back to float.</summary>
    public static float Round(ScalarType t, double v) => t switch
    {
        ScalarType.BFloat16 => (float)(BFloat16)(float)v,
        ScalarType.Float16 => (float)(Half)(float)v,
        _ => (float)v,
    };

    public static float[] Rounded(ScalarType t, float[] values) => values.Select(v => Round(t, v)).ToArray();

    public static byte[] ToBytes(ScalarType t, ReadOnlySpan<float> values)
    {
        int es = Size(t);
        var bytes = new byte[values.Length * es];
        for (int i = 0; i < values.Length; i++)
        {
            Span<byte> at = bytes.AsSpan(i * es, es);
            switch (t)
            {
                case ScalarType.BFloat16: BinaryPrimitives.WriteUInt16LittleEndian(at, BFloat16.RoundToBits(values[i])); break;
                case ScalarType.Float16: BinaryPrimitives.WriteUInt16LittleEndian(at, BitConverter.HalfToUInt16Bits((Half)values[i])); break;
                default: BinaryPrimitives.WriteSingleLittleEndian(at, values[i]); break;
            }
        }
        return bytes;
    }

    public static float[] FromBytes(ScalarType t, ReadOnlySpan<byte> bytes)
    {
        int es = Size(t);
        var values = new float[bytes.Length / es];
        for (int i = 0; i < values.Length; i++)
        {
            ReadOnlySpan<byte> at = bytes.Slice(i * es, es);
            values[i] = t switch
            {
                ScalarType.BFloat16 => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(at) << 16),
                ScalarType.Float16 => (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(at)),
                _ => BinaryPrimitives.ReadSingleLittleEndian(at),
            };
        }
        return values;
    }
}

/// <summary>Seeded host random data.</summary>
internal sealed class HostRandom(int seed)
{
    private readonly Random _rng = new(seed);

    public float[] Normal(long n, double std = 1.0)
    {
        var v = new float[n];
        for (long i = 0; i < n; i++)
        {
            double u1 = 1.0 - _rng.NextDouble(), u2 = _rng.NextDouble();
            v[i] = (float)(std * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return v;
    }

    /// <summary>Values m/64 with |m| &lt;= 255: exact in bf16/fp16/fp32, many exact ties, distinct values 1/64 apart.</summary>
    public float[] GridLogits(long n)
    {
        var v = new float[n];
        for (long i = 0; i < n; i++) v[i] = _rng.Next(-255, 256) / 64f;
        return v;
    }

    public int[] Ints(long n, int maxExclusive)
    {
        var v = new int[n];
        for (long i = 0; i < n; i++) v[i] = _rng.Next(maxExclusive);
        return v;
    }

    public int[] Permutation(int n)
    {
        int[] p = Enumerable.Range(0, n).ToArray();
        _rng.Shuffle(p);
        return p;
    }
}

/// <summary>A device tensor in a storage dtype, optionally placed <c>offset</c> elements into its buffer (to force
/// the unaligned / scalar path).</summary>
internal sealed class DeviceTensor : IDisposable
{
    private readonly DeviceBuffer<byte> _buffer;

    private DeviceTensor(CudaContext ctx, ScalarType dtype, long count, int offset)
    {
        Dtype = dtype;
        Count = count;
        Offset = offset;
        _buffer = new DeviceBuffer<byte>(ctx, (count + offset) * HostDtype.Size(dtype) + 16);
    }

    public ScalarType Dtype { get; }
    public long Count { get; }
    public int Offset { get; }

    public DeviceRange Range => _buffer.Slice(Offset * (long)HostDtype.Size(Dtype), Count * HostDtype.Size(Dtype));

    public static DeviceTensor Upload(CudaContext ctx, ScalarType dtype, float[] values, int offset = 0)
    {
        var t = new DeviceTensor(ctx, dtype, values.Length, offset);
        t._buffer.FillBytes(0xFF);
        t._buffer.CopyFromHost(HostDtype.ToBytes(dtype, values), offset * (long)HostDtype.Size(dtype));
        return t;
    }

    /// <summary>Every byte 0xFF (NaN in bf16/fp16/fp32), filled on <paramref name="stream"/>.</summary>
    public static DeviceTensor Poisoned(CudaContext ctx, CudaStream stream, ScalarType dtype, long count, int offset = 0)
    {
        var t = new DeviceTensor(ctx, dtype, count, offset);
        t._buffer.FillBytes(0xFF, stream);
        return t;
    }

    public float[] Download()
    {
        byte[] all = _buffer.ToArray();
        int es = HostDtype.Size(Dtype);
        return HostDtype.FromBytes(Dtype, all.AsSpan(Offset * es, (int)Count * es));
    }

    public void Dispose() => _buffer.Dispose();
}

internal static class Check
{
    /// <summary>|a - e| &lt;= atol + rtol |e| everywhere, no NaN; reports the first few failures.</summary>
    public static void Close(string name, float[] actual, double[] expected, double atol, double rtol)
    {
        Assert.AreEqual(expected.Length, actual.Length, $"{name}: length");
        var bad = new List<string>();
        int count = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double a = actual[i], e = expected[i];
            if (double.IsNaN(a) || Math.Abs(a - e) > atol + rtol * Math.Abs(e))
            {
                count++;
                if (bad.Count < 8) bad.Add($"[{i}] got {a:R} expected {e:R}");
            }
        }
        Assert.AreEqual(0, count, $"{name}: {count} of {actual.Length} outside atol={atol}, rtol={rtol}: {string.Join("; ", bad)}");
    }

    public static void Close(string name, float[] actual, double[] expected, ScalarType dtype) =>
        Close(name, actual, expected, Tol(dtype), Tol(dtype));

    /// <summary>atol = rtol per docs/DESIGN.md: bf16 1e-2, fp16 1e-3, fp32 1e-5.</summary>
    public static double Tol(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => 1e-2,
        ScalarType.Float16 => 1e-3,
        _ => 1e-5,
    };

    public static void Equal(string name, int[] actual, int[] expected)
    {
        Assert.AreEqual(expected.Length, actual.Length, $"{name}: length");
        int first = -1;
        for (int i = 0; i < actual.Length; i++)
            if (actual[i] != expected[i])
            {
                first = i;
                break;
            }
        int mismatches = actual.Zip(expected).Count(p => p.First != p.Second);
        Assert.AreEqual(0, mismatches, $"{name}: {mismatches} mismatches, first at [{first}]: got {(first >= 0 ? actual[first] : 0)}, expected {(first >= 0 ? expected[first] : 0)}");
    }
}
