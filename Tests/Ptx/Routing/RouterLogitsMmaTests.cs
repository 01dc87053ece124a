using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Routing;

/// <summary>Router logits on tensor cores (many T) against a float64 host product, bitwise run to run, and its preconditions.</summary>
[TestClass]
public sealed class RouterLogitsMmaTests
{
    // T not a multiple of the CTA's 64 tokens, E not a multiple of its 128 experts (zero-filled rows, predicated
    // stores), E = 256 (two column blocks), one 64-wide k-step (H = 64: the ring's prologue only), fewer k-steps than
    // the ring's depth, Qwen3-30B-A3B dims, and T below the block's threshold (the kernel takes any T).
    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DataRow(ScalarType.BFloat16, 257, 128, 2048)]
    [DataRow(ScalarType.Float16, 1000, 60, 192)]
    [DataRow(ScalarType.BFloat16, 300, 256, 64)]
    [DataRow(ScalarType.Float16, 130, 200, 128)]
    [DataRow(ScalarType.BFloat16, 2048, 128, 2048)]
    [DataRow(ScalarType.Float16, 1, 7, 256)]
    public void RouterLogitsMma_MatchesFloat64_AndRepeatsBitwise(ScalarType dtype, int T, int E, int H)
    {
        int seed = 7500 + T + E + H;
        Console.WriteLine($"seed {seed}");
        var rng = new HostRandom(seed);
        float[] x = HostDtype.Rounded(dtype, rng.Normal((long)T * H));
        float[] wr = HostDtype.Rounded(dtype, rng.Normal((long)E * H, 0.05));
        var expected = new double[(long)T * E];
        Parallel.For(0, T, t =>
        {
            for (int e = 0; e < E; e++)
            {
                double sum = 0;
                for (int h = 0; h < H; h++) sum += (double)x[(long)t * H + h] * wr[(long)e * H + h];
                expected[(long)t * E + e] = HostDtype.Round(dtype, sum);
            }
        });

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dX = DeviceTensor.Upload(ctx, dtype, x);
        using var dW = DeviceTensor.Upload(ctx, dtype, wr);
        MoeKernels kernels = MoeKernels.For(ctx);
        float[]? first = null;
        for (int run = 0; run < 2; run++)
        {
            using var dL = DeviceTensor.Poisoned(ctx, stream, dtype, (long)T * E);
            kernels.RouterLogitsMma(stream, dtype, dX.Range, dW.Range, dL.Range, T, E, H);
            stream.Synchronize();
            float[] actual = dL.Download();
            Check.Close($"logits (run {run})", actual, expected, dtype);
            if (first is null) first = actual;
            else CollectionAssert.AreEqual(first, actual, "two runs differ");
        }
    }

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    public void RouterLogitsMma_RejectsBadArguments()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var buffer = new DeviceBuffer<byte>(ctx, 1 << 16);
        DeviceRange r = buffer.AsRange();
        MoeKernels kernels = MoeKernels.For(ctx);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernels.RouterLogitsMma(stream, ScalarType.Float32, r, r, r, 8, 8, 64));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernels.RouterLogitsMma(stream, ScalarType.BFloat16, r, r, r, 8, 257, 64));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernels.RouterLogitsMma(stream, ScalarType.BFloat16, r, r, r, 8, 8, 96));
        var ex = Assert.ThrowsExactly<ArgumentException>(() => kernels.RouterLogitsMma(stream, ScalarType.BFloat16, r, r, r, 1024, 8, 64));
        Assert.AreEqual("x", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentException>(() => kernels.RouterLogitsMma(stream, ScalarType.BFloat16, r, buffer.Slice(2, 1024), r, 8, 8, 64));
        Assert.AreEqual("wr", ex.ParamName); // not 16-byte aligned
    }

    [TestMethod]
    [DataRow(ScalarType.Float32, 1024, 128, 2048, "fp32 takes the grouped GEMM")]
    [DataRow(ScalarType.BFloat16, MoeKernels.RouterLogitsGemvMaxTokens, 128, 2048, "the GEMV's range")]
    [DataRow(ScalarType.BFloat16, 1024, 257, 2048, "E past 256")]
    [DataRow(ScalarType.BFloat16, 1024, 128, 2056, "H not a multiple of 64")]
    public void CanRouterLogitsMma_RejectsWhatItCannotTake(ScalarType dtype, int T, int E, int H, string why)
    {
        var aligned = new DeviceRange(0x1000, DeviceRange.UnknownSize);
        Assert.IsFalse(MoeKernels.CanRouterLogitsMma(dtype, T, E, H, aligned, aligned, aligned), why);
    }

    [TestMethod]
    public void CanRouterLogitsMma_TakesQwen3Shapes_AndRejectsUnalignedPointers()
    {
        var aligned = new DeviceRange(0x1000, DeviceRange.UnknownSize);
        var odd = new DeviceRange(0x1008, DeviceRange.UnknownSize);
        Assert.IsTrue(MoeKernels.CanRouterLogitsMma(ScalarType.BFloat16, 4096, 128, 2048, aligned, aligned, aligned));
        Assert.IsTrue(MoeKernels.CanRouterLogitsMma(ScalarType.Float16, 16384, 128, 4096, aligned, aligned, aligned));
        Assert.IsFalse(MoeKernels.CanRouterLogitsMma(ScalarType.BFloat16, 4096, 128, 2048, odd, aligned, aligned));
        Assert.IsFalse(MoeKernels.CanRouterLogitsMma(ScalarType.BFloat16, 4096, 128, 2048, aligned, odd, aligned));
        Assert.IsFalse(MoeKernels.CanRouterLogitsMma(ScalarType.BFloat16, 4096, 128, 2048, aligned, aligned, odd));
    }
}
