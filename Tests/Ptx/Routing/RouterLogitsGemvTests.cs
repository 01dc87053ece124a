using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Routing;

/// <summary>Router logits GEMV (small T) against a float64 host product, and its preconditions.</summary>
[TestClass]
public sealed class RouterLogitsGemvTests
{
    // T and E not multiples of the warp's 8 tokens x 2 experts (predicated edges), H not a multiple of 256 (the
    // lanes' chunk loop ends unevenly), Qwen3-30B-A3B dims, and the largest T the block sends here.
    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DataRow(ScalarType.BFloat16, 1, 128, 2048)]
    [DataRow(ScalarType.Float16, 1, 128, 2048)]
    [DataRow(ScalarType.BFloat16, 7, 13, 72)]
    [DataRow(ScalarType.Float16, 9, 3, 8)]
    [DataRow(ScalarType.BFloat16, 128, 128, 2048)]
    [DataRow(ScalarType.Float16, 256, 60, 1032)]
    public void RouterLogitsGemv_MatchesFloat64(ScalarType dtype, int T, int E, int H)
    {
        var rng = new HostRandom(7000 + T + E + H);
        float[] x = HostDtype.Rounded(dtype, rng.Normal((long)T * H));
        float[] wr = HostDtype.Rounded(dtype, rng.Normal((long)E * H, 0.05));

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dX = DeviceTensor.Upload(ctx, dtype, x);
        using var dW = DeviceTensor.Upload(ctx, dtype, wr);
        using var dL = DeviceTensor.Poisoned(ctx, stream, dtype, (long)T * E);
        ctx.Synchronize();
        Assert.IsTrue(MoeKernels.CanRouterLogitsGemv(dtype, T, H, dX.Range, dW.Range, dL.Range));

        MoeKernels.For(ctx).RouterLogitsGemv(stream, dtype, dX.Range, dW.Range, dL.Range, T, E, H);
        stream.Synchronize();

        var expected = new double[(long)T * E];
        for (int t = 0; t < T; t++)
            for (int e = 0; e < E; e++)
            {
                double sum = 0;
                for (int h = 0; h < H; h++) sum += (double)x[(long)t * H + h] * wr[(long)e * H + h];
                expected[(long)t * E + e] = HostDtype.Round(dtype, sum);
            }
        Check.Close("logits", dL.Download(), expected, dtype);
    }

    [TestMethod]
    [DataRow(ScalarType.Float32, 1, 64, "fp32 takes the FFMA GEMM")]
    [DataRow(ScalarType.BFloat16, 0, 64, "no tokens")]
    [DataRow(ScalarType.BFloat16, MoeKernels.RouterLogitsGemvMaxTokens + 1, 64, "too many tokens")]
    [DataRow(ScalarType.BFloat16, 1, 60, "H not a multiple of 8")]
    public void CanRouterLogitsGemv_RejectsWhatItCannotTake(ScalarType dtype, int T, int H, string why)
    {
        var aligned = new DeviceRange(0x1000, DeviceRange.UnknownSize);
        Assert.IsFalse(MoeKernels.CanRouterLogitsGemv(dtype, T, H, aligned, aligned, aligned), why);
    }

    [TestMethod]
    public void CanRouterLogitsGemv_RejectsUnalignedPointers_AndTakesAlignedOnes()
    {
        var aligned = new DeviceRange(0x1000, DeviceRange.UnknownSize);
        var odd = new DeviceRange(0x1002, DeviceRange.UnknownSize);
        Assert.IsTrue(MoeKernels.CanRouterLogitsGemv(ScalarType.BFloat16, 8, 64, aligned, aligned, aligned));
        Assert.IsFalse(MoeKernels.CanRouterLogitsGemv(ScalarType.BFloat16, 8, 64, odd, aligned, aligned));
        Assert.IsFalse(MoeKernels.CanRouterLogitsGemv(ScalarType.BFloat16, 8, 64, aligned, odd, aligned));
        Assert.IsFalse(MoeKernels.CanRouterLogitsGemv(ScalarType.BFloat16, 8, 64, aligned, aligned, odd));
    }
}
