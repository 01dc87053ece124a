using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Elementwise;

/// <summary>
/// <c>moe_convert_{src}_to_{dst}</c> against the host's round-to-nearest-even (.NET BFloat16/Half casts, independent
/// of the kernel): every ordered pair, a count past one grid's threads (the grid-stride loop runs twice), an unaligned
/// destination, the element after the last poisoned and left so.
/// </summary>
[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class DtypeConvertKernelTests
{
    private const int Count = 8192 * 256 + 777; // > MaxGrid * Block: a second grid-stride step, partial

    [TestMethod]
    [DataRow(ScalarType.BFloat16, ScalarType.Float16)]
    [DataRow(ScalarType.BFloat16, ScalarType.Float32)]
    [DataRow(ScalarType.Float16, ScalarType.BFloat16)]
    [DataRow(ScalarType.Float16, ScalarType.Float32)]
    [DataRow(ScalarType.Float32, ScalarType.BFloat16)]
    [DataRow(ScalarType.Float32, ScalarType.Float16)]
    public void Convert_EveryPair_MatchesHostRounding(ScalarType from, ScalarType to)
    {
        int seed = 7100 + 10 * (int)from + (int)to;
        var rng = new HostRandom(seed);
        float[] src = rng.Normal(Count, 3.0);
        // Edge values: near the fp16 maximum (65280 is exact in bf16 and fp16), an fp16 subnormal, ties at bf16/fp16
        // precision, signed zero, large and tiny. Nothing overflows fp16 (inf - inf would read as a mismatch).
        float[] edges = [65280f, -65280f, 6e-8f, 1f + 1f / 256 + 1f / 65536, 1f + 1f / 2048, -0f, 1e-30f, 3e4f];
        edges.CopyTo(src, 0);
        src = HostDtype.Rounded(from, src);

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dSrc = DeviceTensor.Upload(ctx, from, src);
        using var dDst = DeviceTensor.Poisoned(ctx, stream, to, Count + 1, offset: 1);
        ctx.Synchronize();

        DeviceRange dst = dDst.Range with { Bytes = (long)Count * HostDtype.Size(to) };
        DtypeConvertKernels.For(ctx).Convert(stream, from, to, dSrc.Range, dst, Count);
        stream.Synchronize();

        float[] got = dDst.Download();
        Assert.IsTrue(float.IsNaN(got[Count]), "the element after the last is not written");
        var expected = src.Select(v => (double)HostDtype.Round(to, v)).ToArray();
        Check.Close($"convert {from.ShortName()}->{to.ShortName()} (seed {seed})", got[..Count], expected, 0, 0);
    }

    [TestMethod]
    public void Convert_BadArguments_FailBeforeAnyLaunch()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var a = new DeviceBuffer<byte>(ctx, 64);
        using var b = new DeviceBuffer<byte>(ctx, 64);
        DtypeConvertKernels k = DtypeConvertKernels.For(ctx);
        Assert.AreEqual("to", Assert.Throws<ArgumentException>(() => k.Convert(stream, ScalarType.Float16, ScalarType.Float16, a, b, 4)).ParamName);
        Assert.AreEqual("dest", Assert.Throws<ArgumentException>(() => k.Convert(stream, ScalarType.BFloat16, ScalarType.Float32, a, b, 32)).ParamName);
        Assert.AreEqual("dest", Assert.Throws<ArgumentException>(() => k.Convert(stream, ScalarType.BFloat16, ScalarType.Float16, a, a.Slice(8, 32), 16)).ParamName);
        Assert.AreEqual("source", Assert.Throws<ArgumentException>(() => k.Convert(stream, ScalarType.BFloat16, ScalarType.Float16, DeviceRange.Null, b, 4)).ParamName);
        k.Convert(stream, ScalarType.BFloat16, ScalarType.Float16, DeviceRange.Null, DeviceRange.Null, 0); // empty: nothing to check or launch
    }
}
