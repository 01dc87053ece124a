using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Elementwise;

/// <summary>Top-k combine forward/backward and the dX sum over k against host formulas.</summary>
[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class CombineKernelTests
{
    // ---------------------------------------------------------------- combine forward
    [TestMethod]
    [DataRow(ScalarType.BFloat16, 1, 1, 64, false, 0)]
    [DataRow(ScalarType.Float16, 7, 8, 6, true, 0)]
    [DataRow(ScalarType.Float32, 33, 2, 2048, true, 0)]
    [DataRow(ScalarType.BFloat16, 128, 8, 2048, true, 1)]  // unaligned -> scalar path
    [DataRow(ScalarType.Float32, 5, 3, 1, false, 0)]
    [DataRow(ScalarType.Float16, 300, 4, 520, false, 0)]
    public void CombineForward_MatchesHost(ScalarType dtype, int T, int k, int H, bool useInverse, int offset)
    {
        var rng = new HostRandom(7000 + T + H);
        int tk = T * k;
        float[] u = HostDtype.Rounded(dtype, rng.Normal((long)tk * H));
        float[] w = HostDtype.Rounded(dtype, rng.Normal(tk, 0.5));
        int[] inverse = rng.Permutation(tk);

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dU = DeviceTensor.Upload(ctx, dtype, u, offset);
        using var dW = DeviceTensor.Upload(ctx, dtype, w);
        using var dInv = DeviceBuffer<int>.FromHost(ctx, inverse);
        using var dY = DeviceTensor.Poisoned(ctx, stream, dtype, (long)T * H, offset);
        ctx.Synchronize();

        MoeKernels.For(ctx).CombineForward(stream, dtype, dU.Range, useInverse ? dInv : DeviceRange.Null, dW.Range, dY.Range, T, k, H);
        stream.Synchronize();

        var expected = new double[(long)T * H];
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
            {
                double acc = 0;
                for (int j = 0; j < k; j++)
                {
                    int p = t * k + j, row = useInverse ? inverse[p] : p;
                    acc += (double)w[p] * u[(long)row * H + h];
                }
                expected[(long)t * H + h] = HostDtype.Round(dtype, acc);
            }
        Check.Close("y", dY.Download(), expected, dtype);
    }

    // ---------------------------------------------------------------- combine backward
    [TestMethod]
    [DataRow(ScalarType.BFloat16, 1, 1, 64, false, 0)]
    [DataRow(ScalarType.Float16, 7, 8, 6, true, 0)]
    [DataRow(ScalarType.Float32, 33, 2, 2048, true, 0)]
    [DataRow(ScalarType.BFloat16, 128, 8, 2048, true, 1)]
    [DataRow(ScalarType.Float32, 5, 3, 1, false, 0)]
    [DataRow(ScalarType.Float16, 300, 4, 520, false, 1)]
    public void CombineBackward_MatchesHost_AndIsDeterministic(ScalarType dtype, int T, int k, int H, bool useInverse, int offset)
    {
        var rng = new HostRandom(8000 + T + H);
        int tk = T * k;
        float[] dy = HostDtype.Rounded(dtype, rng.Normal((long)T * H));
        float[] u = HostDtype.Rounded(dtype, rng.Normal((long)tk * H));
        float[] w = HostDtype.Rounded(dtype, rng.Normal(tk, 0.5));
        int[] inverse = rng.Permutation(tk);

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dDy = DeviceTensor.Upload(ctx, dtype, dy, offset);
        using var dU = DeviceTensor.Upload(ctx, dtype, u, offset);
        using var dW = DeviceTensor.Upload(ctx, dtype, w);
        using var dInv = DeviceBuffer<int>.FromHost(ctx, inverse);
        using var dDu = DeviceTensor.Poisoned(ctx, stream, dtype, (long)tk * H, offset);
        using var dDw = new DeviceBuffer<float>(ctx, tk);
        dDw.FillBytes(0xFF, stream);
        ctx.Synchronize();

        MoeKernels kernels = MoeKernels.For(ctx);
        DeviceRange rows = useInverse ? dInv : DeviceRange.Null;
        kernels.CombineBackward(stream, dtype, dDy.Range, dU.Range, rows, dW.Range, dDu.Range, dDw, T, k, H);
        stream.Synchronize();
        float[] gotDw = dDw.ToArray();

        var expDu = new double[(long)tk * H];
        var expDw = new double[tk];
        for (int t = 0; t < T; t++)
            for (int j = 0; j < k; j++)
            {
                int p = t * k + j, row = useInverse ? inverse[p] : p;
                double dot = 0;
                for (int h = 0; h < H; h++)
                {
                    expDu[(long)row * H + h] = HostDtype.Round(dtype, (double)w[p] * dy[(long)t * H + h]);
                    dot += (double)dy[(long)t * H + h] * u[(long)row * H + h];
                }
                expDw[p] = dot;
            }
        Check.Close("dU", dDu.Download(), expDu, dtype);
        Check.Close("dW", gotDw, expDw, 1e-4, 1e-4); // fp32 dot of storage values

        dDw.FillBytes(0xFF, stream);
        kernels.CombineBackward(stream, dtype, dDy.Range, dU.Range, rows, dW.Range, dDu.Range, dDw, T, k, H);
        stream.Synchronize();
        float[] again = dDw.ToArray();
        Assert.IsTrue(gotDw.AsSpan().SequenceEqual(again), "dW differs between two identical runs (non-deterministic reduction)");
    }

    // ---------------------------------------------------------------- sum over k
    [TestMethod]
    [DataRow(ScalarType.BFloat16, 1, 1, 64, false, false, 0)]
    [DataRow(ScalarType.Float16, 7, 8, 6, true, false, 0)]
    [DataRow(ScalarType.Float32, 33, 2, 2048, true, false, 0)]
    [DataRow(ScalarType.BFloat16, 128, 8, 2048, true, true, 1)]   // dX aliases the addend, unaligned
    [DataRow(ScalarType.Float32, 5, 3, 1, false, false, 0)]
    [DataRow(ScalarType.Float16, 300, 4, 520, true, true, 0)]
    public void SumOverTopK_MatchesHost(ScalarType dtype, int T, int k, int H, bool withAddend, bool aliasAddend, int offset)
    {
        var rng = new HostRandom(9000 + T + H);
        int tk = T * k;
        float[] slots = HostDtype.Rounded(dtype, rng.Normal((long)tk * H));
        float[] addend = HostDtype.Rounded(dtype, rng.Normal((long)T * H));

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dSlots = DeviceTensor.Upload(ctx, dtype, slots, offset);
        using var dAdd = DeviceTensor.Upload(ctx, dtype, addend, offset);
        using var dOut = DeviceTensor.Poisoned(ctx, stream, dtype, (long)T * H, offset);
        ctx.Synchronize();

        DeviceTensor output = aliasAddend ? dAdd : dOut;
        MoeKernels.For(ctx).SumOverTopK(stream, dtype, dSlots.Range, withAddend ? dAdd.Range : DeviceRange.Null, output.Range, T, k, H);
        stream.Synchronize();

        var expected = new double[(long)T * H];
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
            {
                double acc = 0;
                for (int j = 0; j < k; j++) acc += slots[(long)(t * k + j) * H + h];
                if (withAddend) acc += addend[(long)t * H + h];
                expected[(long)t * H + h] = HostDtype.Round(dtype, acc);
            }
        Check.Close("dX", output.Download(), expected, dtype);
    }

    [TestMethod]
    public void Combine_RejectsBadArguments()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var u = new DeviceBuffer<float>(ctx, 4 * 2 * 8);
        using var w = new DeviceBuffer<float>(ctx, 4 * 2);
        using var y = new DeviceBuffer<float>(ctx, 4 * 8);
        using var inv = new DeviceBuffer<int>(ctx, 7);
        MoeKernels kernels = MoeKernels.For(ctx);
        var ex = Assert.ThrowsExactly<ArgumentException>(() =>
            kernels.CombineForward(stream, ScalarType.Float32, u, inv, w, y, 4, 2, 8)); // inverse needs TK = 8
        Assert.AreEqual("rowOfSlot", ex.ParamName);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            kernels.CombineForward(stream, ScalarType.Float32, u, DeviceRange.Null, w, y, 4, 0, 8));
        ex = Assert.ThrowsExactly<ArgumentException>(() =>
            kernels.SumOverTopK(stream, ScalarType.Float32, u, DeviceRange.Null, y, 4, 2, 9));
        Assert.AreEqual("slotRows", ex.ParamName);
    }
}
