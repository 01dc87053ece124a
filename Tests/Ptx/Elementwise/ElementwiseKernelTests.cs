using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Elementwise;

/// <summary>Gather rows and SwiGLU forward/backward against host formulas. <c>offset</c> = 1 places every tensor one
/// element into its buffer, so the 16-byte vector path is illegal and the scalar path runs.</summary>
[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class ElementwiseKernelTests
{
    private static double Sigmoid(double g) => 1.0 / (1.0 + Math.Exp(-g));

    // ---------------------------------------------------------------- gather rows
    [TestMethod]
    [DataRow(ScalarType.BFloat16, 1, 1, 64, 0)]
    [DataRow(ScalarType.Float16, 7, 8, 6, 0)]       // H not a multiple of 8 -> scalar path
    [DataRow(ScalarType.Float32, 33, 2, 2048, 0)]
    [DataRow(ScalarType.BFloat16, 128, 8, 2048, 1)] // unaligned rows -> scalar path
    [DataRow(ScalarType.Float32, 5, 3, 1, 0)]
    public void GatherRows_CopiesTokenRowsIntoExpertOrder(ScalarType dtype, int T, int k, int H, int offset)
    {
        var rng = new HostRandom(4000 + T + H);
        int tk = T * k;
        float[] src = HostDtype.Rounded(dtype, rng.Normal((long)T * H));
        int[] gather = rng.Permutation(tk);

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dSrc = DeviceTensor.Upload(ctx, dtype, src, offset);
        using var dGather = DeviceBuffer<int>.FromHost(ctx, gather);
        using var dDst = DeviceTensor.Poisoned(ctx, stream, dtype, (long)tk * H, offset);
        ctx.Synchronize();

        MoeKernels.For(ctx).GatherRows(stream, dtype, dSrc.Range, dGather, dDst.Range, tk, k, H);
        stream.Synchronize();

        float[] got = dDst.Download();
        var expected = new double[(long)tk * H];
        for (int r = 0; r < tk; r++)
            for (int h = 0; h < H; h++) expected[(long)r * H + h] = src[(long)(gather[r] / k) * H + h];
        Check.Close("dst", got, expected, 0, 0); // a copy: bit-exact
    }

    // ---------------------------------------------------------------- SwiGLU
    [TestMethod]
    [DataRow(ScalarType.BFloat16, 1, 8, 0)]
    [DataRow(ScalarType.Float16, 7, 13, 0)]         // I not a multiple of 8 -> scalar path
    [DataRow(ScalarType.Float32, 64, 768, 0)]       // Qwen3-30B-A3B I
    [DataRow(ScalarType.BFloat16, 5, 768, 1)]       // unaligned -> scalar path
    [DataRow(ScalarType.Float32, 3, 1, 0)]
    [DataRow(ScalarType.Float16, 33, 96, 0)]
    [DataRow(ScalarType.BFloat16, 9, 1024, 0)]      // one step of 128 threads
    [DataRow(ScalarType.Float16, 9, 1025, 0)]       // two steps of 96 threads (scalar path)
    [DataRow(ScalarType.BFloat16, 9, 1536, 0)]      // Qwen3-235B-A22B I: two steps of 96 threads
    public void SiluMulForward_MatchesHost(ScalarType dtype, int R, int I, int offset)
    {
        var rng = new HostRandom(5000 + R + I);
        float[] g1 = HostDtype.Rounded(dtype, rng.Normal((long)R * 2 * I, 2.0));

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dG1 = DeviceTensor.Upload(ctx, dtype, g1, offset);
        using var dA = DeviceTensor.Poisoned(ctx, stream, dtype, (long)R * I, offset);
        ctx.Synchronize();

        MoeKernels.For(ctx).SiluMulForward(stream, dtype, dG1.Range, dA.Range, R, I);
        stream.Synchronize();

        var expected = new double[(long)R * I];
        for (int r = 0; r < R; r++)
            for (int c = 0; c < I; c++)
            {
                double g = g1[(long)r * 2 * I + c], u = g1[(long)r * 2 * I + I + c];
                expected[(long)r * I + c] = HostDtype.Round(dtype, g * Sigmoid(g) * u);
            }
        Check.Close("act", dA.Download(), expected, dtype);
    }

    [TestMethod]
    [DataRow(ScalarType.BFloat16, 1, 8, 0)]
    [DataRow(ScalarType.Float16, 7, 13, 0)]
    [DataRow(ScalarType.Float32, 64, 768, 0)]
    [DataRow(ScalarType.BFloat16, 5, 768, 1)]
    [DataRow(ScalarType.Float32, 3, 1, 0)]
    [DataRow(ScalarType.Float16, 33, 96, 1)]
    [DataRow(ScalarType.BFloat16, 9, 1024, 0)]
    [DataRow(ScalarType.Float16, 9, 1025, 0)]
    [DataRow(ScalarType.BFloat16, 9, 1536, 0)]
    public void SiluMulBackward_MatchesHost(ScalarType dtype, int R, int I, int offset)
    {
        var rng = new HostRandom(6000 + R + I);
        float[] g1 = HostDtype.Rounded(dtype, rng.Normal((long)R * 2 * I, 2.0));
        float[] dAct = HostDtype.Rounded(dtype, rng.Normal((long)R * I));

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dG1 = DeviceTensor.Upload(ctx, dtype, g1, offset);
        using var dDA = DeviceTensor.Upload(ctx, dtype, dAct, offset);
        using var dDG1 = DeviceTensor.Poisoned(ctx, stream, dtype, (long)R * 2 * I, offset);
        ctx.Synchronize();

        MoeKernels.For(ctx).SiluMulBackward(stream, dtype, dG1.Range, dDA.Range, dDG1.Range, R, I);
        stream.Synchronize();

        var expected = new double[(long)R * 2 * I];
        for (int r = 0; r < R; r++)
            for (int c = 0; c < I; c++)
            {
                double g = g1[(long)r * 2 * I + c], u = g1[(long)r * 2 * I + I + c], da = dAct[(long)r * I + c];
                double s = Sigmoid(g);
                expected[(long)r * 2 * I + c] = HostDtype.Round(dtype, da * u * s * (1 + g * (1 - s)));
                expected[(long)r * 2 * I + I + c] = HostDtype.Round(dtype, da * g * s);
            }
        Check.Close("dGateUp", dDG1.Download(), expected, dtype);
    }

    /// <summary>The routed backward: w = weights[gather[r]] scales dA (in f32) before the SwiGLU backward; act_w = rnd(w · a)
    /// and dw[gather[r]] = &lt;dA_u[r], a[r]&gt; with a = rnd(silu(g) u), written per slot (gather a permutation).</summary>
    [TestMethod]
    [DataRow(ScalarType.BFloat16, 1, 8, 0)]
    [DataRow(ScalarType.Float16, 7, 13, 0)]         // I not a multiple of 8 -> scalar path
    [DataRow(ScalarType.BFloat16, 96, 768, 0)]      // Qwen3-30B-A3B I
    [DataRow(ScalarType.Float32, 64, 1536, 0)]      // Qwen3-235B-A22B I: two column steps per thread
    [DataRow(ScalarType.BFloat16, 5, 768, 1)]       // unaligned -> scalar path
    [DataRow(ScalarType.Float16, 33, 96, 1)]
    [DataRow(ScalarType.BFloat16, 17, 1024, 0)]     // 4 warps: the block sum of every warp
    [DataRow(ScalarType.Float32, 17, 1025, 0)]      // 3 warps, two steps, scalar path
    [DataRow(ScalarType.BFloat16, 17, 200, 0)]      // 25 chunks: one warp
    [DataRow(ScalarType.BFloat16, 17, 400, 0)]      // 50 chunks: two warps
    public void SiluMulBackwardRouted_MatchesHost(ScalarType dtype, int R, int I, int offset)
    {
        int seed = Environment.TickCount;
        Console.WriteLine($"seed {seed}");
        var rng = new HostRandom(seed);
        float[] g1 = HostDtype.Rounded(dtype, rng.Normal((long)R * 2 * I, 2.0));
        float[] dAct = HostDtype.Rounded(dtype, rng.Normal((long)R * I));
        float[] weights = HostDtype.Rounded(dtype, rng.Normal(R, 0.5));
        int[] gather = rng.Permutation(R);

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dG1 = DeviceTensor.Upload(ctx, dtype, g1, offset);
        using var dDA = DeviceTensor.Upload(ctx, dtype, dAct, offset);
        using var dW = DeviceTensor.Upload(ctx, dtype, weights, offset);
        using var dGather = DeviceBuffer<int>.FromHost(ctx, gather);
        using var dDG1 = DeviceTensor.Poisoned(ctx, stream, dtype, (long)R * 2 * I, offset);
        using var dActW = DeviceTensor.Poisoned(ctx, stream, dtype, (long)R * I, offset);
        using var dDw = DeviceTensor.Poisoned(ctx, stream, ScalarType.Float32, R);
        ctx.Synchronize();

        MoeKernels.For(ctx).SiluMulBackwardRouted(stream, dtype, dG1.Range, dDA.Range, dGather, dW.Range, dDG1.Range, dActW.Range, dDw.Range, R, I);
        stream.Synchronize();

        var expectedDg1 = new double[(long)R * 2 * I];
        var expectedActW = new double[(long)R * I];
        var expectedDw = new double[R];
        for (int r = 0; r < R; r++)
        {
            int p = gather[r];
            double w = weights[p], dot = 0;
            for (int c = 0; c < I; c++)
            {
                double g = g1[(long)r * 2 * I + c], u = g1[(long)r * 2 * I + I + c], dau = dAct[(long)r * I + c];
                double s = Sigmoid(g), a = HostDtype.Round(dtype, g * s * u), da = w * dau;
                dot += dau * a;
                expectedActW[(long)r * I + c] = HostDtype.Round(dtype, w * a);
                expectedDg1[(long)r * 2 * I + c] = HostDtype.Round(dtype, da * u * s * (1 + g * (1 - s)));
                expectedDg1[(long)r * 2 * I + I + c] = HostDtype.Round(dtype, da * g * s);
            }
            expectedDw[p] = dot;
        }
        Check.Close($"dGateUp (seed {seed})", dDG1.Download(), expectedDg1, dtype);
        Check.Close($"actW (seed {seed})", dActW.Download(), expectedActW, dtype);
        double dwTol = Math.Max(Check.Tol(dtype), 1e-4); // an f32 sum of I products
        Check.Close($"dWeights (seed {seed})", dDw.Download(), expectedDw, dwTol, dwTol);
    }

    [TestMethod]
    public void SiluMulBackwardRouted_RejectsShortBuffersBeforeLaunch()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        const int R = 4, I = 8;
        using var g1 = new DeviceBuffer<float>(ctx, R * 2 * I);
        using var dA = new DeviceBuffer<float>(ctx, R * I);
        using var gather = new DeviceBuffer<int>(ctx, R);
        using var w = new DeviceBuffer<float>(ctx, R);
        using var dG1 = new DeviceBuffer<float>(ctx, R * 2 * I);
        using var actW = new DeviceBuffer<float>(ctx, R * I);
        using var dw = new DeviceBuffer<float>(ctx, R);
        using var shortGather = new DeviceBuffer<int>(ctx, R - 1);
        using var shortActW = new DeviceBuffer<float>(ctx, R * I - 1);
        using var shortDw = new DeviceBuffer<float>(ctx, R - 1);
        MoeKernels k = MoeKernels.For(ctx);
        var ex = Assert.ThrowsExactly<ArgumentException>(() =>
            k.SiluMulBackwardRouted(stream, ScalarType.Float32, g1, dA, shortGather, w, dG1, actW, dw, R, I));
        Assert.AreEqual("gather", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentException>(() =>
            k.SiluMulBackwardRouted(stream, ScalarType.Float32, g1, dA, gather, w, dG1, shortActW, dw, R, I));
        Assert.AreEqual("actW", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentException>(() =>
            k.SiluMulBackwardRouted(stream, ScalarType.Float32, g1, dA, gather, w, dG1, actW, shortDw, R, I));
        Assert.AreEqual("dWeights", ex.ParamName);
    }

    [TestMethod]
    public void SiluMul_RejectsShortBuffers()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var g1 = new DeviceBuffer<float>(ctx, 2 * 2 * 8);
        using var a = new DeviceBuffer<float>(ctx, 2 * 8 - 1);
        var ex = Assert.ThrowsExactly<ArgumentException>(() =>
            MoeKernels.For(ctx).SiluMulForward(stream, ScalarType.Float32, g1, a, 2, 8));
        Assert.AreEqual("act", ex.ParamName);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            MoeKernels.For(ctx).SiluMulForward(stream, (ScalarType)77, g1, a, 2, 8));
    }
}
