using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Routing;

/// <summary>Router softmax/top-k/renorm forward and backward against plain host formulas (double precision).</summary>
[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class RouterKernelTests
{
    // ---------------------------------------------------------------- host formulas
    private static (double[] Probs, int[] Sel, double[] Weights) HostForward(float[] logits, int T, int E, int k, bool norm)
    {
        var probs = new double[T * E];
        var sel = new int[T * k];
        var w = new double[T * k];
        for (int t = 0; t < T; t++)
        {
            double max = double.NegativeInfinity;
            for (int e = 0; e < E; e++) max = Math.Max(max, logits[t * E + e]);
            double sum = 0;
            for (int e = 0; e < E; e++) sum += Math.Exp(logits[t * E + e] - max);
            for (int e = 0; e < E; e++) probs[t * E + e] = Math.Exp(logits[t * E + e] - max) / sum;
            int[] order = Enumerable.Range(0, E).OrderByDescending(e => probs[t * E + e]).ThenBy(e => e).Take(k).ToArray();
            double s = order.Sum(e => probs[t * E + e]);
            for (int j = 0; j < k; j++)
            {
                sel[t * k + j] = order[j];
                double v = probs[t * E + order[j]];
                w[t * k + j] = norm ? v / s : v;
            }
        }
        return (probs, sel, w);
    }

    private static double[] HostBackward(float[] probs, int[] sel, float[] dw, int T, int E, int k, bool norm)
    {
        var dl = new double[T * E];
        for (int t = 0; t < T; t++)
        {
            double s = 0, dwv = 0;
            for (int j = 0; j < k; j++)
            {
                double v = probs[t * E + sel[t * k + j]];
                s += v;
                dwv += dw[t * k + j] * v;
            }
            var dp = new double[E];
            for (int j = 0; j < k; j++)
                dp[sel[t * k + j]] = norm ? (dw[t * k + j] - dwv / s) / s : dw[t * k + j];
            double c = 0;
            for (int e = 0; e < E; e++) c += probs[t * E + e] * dp[e];
            for (int e = 0; e < E; e++) dl[t * E + e] = probs[t * E + e] * (dp[e] - c);
        }
        return dl;
    }

    // ---------------------------------------------------------------- forward
    [TestMethod]
    [DataRow(ScalarType.BFloat16, 1, 8, 2, true)]
    [DataRow(ScalarType.BFloat16, 7, 128, 8, true)]      // Qwen3-30B-A3B routing
    [DataRow(ScalarType.Float16, 33, 60, 4, false)]      // E not a multiple of 32
    [DataRow(ScalarType.Float32, 5, 256, 8, true)]       // E at the limit
    [DataRow(ScalarType.Float32, 64, 3, 3, true)]        // k = E
    [DataRow(ScalarType.BFloat16, 100, 40, 1, false)]    // k = 1
    [DataRow(ScalarType.Float16, 9, 1, 1, true)]         // E = 1
    [DataRow(ScalarType.Float32, 1000, 128, 8, false)]
    [DataRow(ScalarType.BFloat16, 17, 200, 40, true)]    // k > 32: ranks span two slots per lane
    public void Forward_MatchesHostSoftmaxTopK(ScalarType dtype, int T, int E, int k, bool norm)
    {
        float[] logits = new HostRandom(1000 + T * 31 + E).GridLogits((long)T * E);
        RunForward(dtype, logits, T, E, k, norm);
    }

    [TestMethod]
    [DataRow(ScalarType.BFloat16, 3, 40, 6, true)]
    [DataRow(ScalarType.Float32, 2, 128, 8, false)]
    public void Forward_AllTied_PicksLowestExpertIds(ScalarType dtype, int T, int E, int k, bool norm)
    {
        float[] logits = new float[T * E]; // all zero: every probability ties
        var (sel, weights) = RunForward(dtype, logits, T, E, k, norm);
        for (int t = 0; t < T; t++)
            for (int j = 0; j < k; j++)
            {
                Assert.AreEqual(j, sel[t * k + j], $"t={t} j={j}");
                Assert.AreEqual(HostDtype.Round(dtype, norm ? 1.0 / k : 1.0 / E), weights[t * k + j], 1e-6, $"t={t} j={j}");
            }
    }

    private static (int[] Sel, float[] Weights) RunForward(ScalarType dtype, float[] logits, int T, int E, int k, bool norm)
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dLogits = DeviceTensor.Upload(ctx, dtype, logits);
        using var dProbs = new DeviceBuffer<float>(ctx, (long)T * E);
        using var dSel = new DeviceBuffer<int>(ctx, (long)T * k);
        using var dWeights = DeviceTensor.Poisoned(ctx, stream, dtype, (long)T * k);
        dProbs.FillBytes(0xFF, stream);
        dSel.FillBytes(0xFF, stream);
        ctx.Synchronize();

        MoeKernels.For(ctx).RouterForward(stream, dtype, dLogits.Range, dProbs, dSel, dWeights.Range, T, E, k, norm);
        stream.Synchronize();

        var (probs, sel, w) = HostForward(HostDtype.Rounded(dtype, logits), T, E, k, norm);
        Check.Close("probs", dProbs.ToArray(), probs, 1e-5, 1e-5);
        int[] gotSel = dSel.ToArray();
        Check.Equal("sel", gotSel, sel);
        float[] gotW = dWeights.Download();
        Check.Close("weights", gotW, w.Select(v => (double)HostDtype.Round(dtype, v)).ToArray(), dtype);
        return (gotSel, gotW);
    }

    // ---------------------------------------------------------------- backward
    [TestMethod]
    [DataRow(ScalarType.BFloat16, 1, 8, 2, true)]
    [DataRow(ScalarType.BFloat16, 7, 128, 8, true)]
    [DataRow(ScalarType.Float16, 33, 60, 4, false)]
    [DataRow(ScalarType.Float32, 5, 256, 8, true)]
    [DataRow(ScalarType.Float32, 64, 3, 3, true)]
    [DataRow(ScalarType.BFloat16, 100, 40, 1, false)]
    [DataRow(ScalarType.Float32, 300, 128, 8, true)]
    [DataRow(ScalarType.Float16, 17, 200, 40, true)]
    public void Backward_MatchesHostFormula(ScalarType dtype, int T, int E, int k, bool norm)
    {
        var rng = new HostRandom(2000 + T * 7 + E);
        float[] logits = rng.GridLogits((long)T * E);
        var (p, sel, _) = HostForward(logits, T, E, k, norm);
        float[] probs = p.Select(v => (float)v).ToArray();
        float[] dw = rng.Normal((long)T * k);

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dProbs = DeviceBuffer<float>.FromHost(ctx, probs);
        using var dSel = DeviceBuffer<int>.FromHost(ctx, sel);
        using var dDw = DeviceBuffer<float>.FromHost(ctx, dw);
        using var dLogits = DeviceTensor.Poisoned(ctx, stream, dtype, (long)T * E);
        ctx.Synchronize();

        MoeKernels.For(ctx).RouterBackward(stream, dtype, dProbs, dSel, dDw, dLogits.Range, T, E, k, norm);
        stream.Synchronize();

        double[] expected = HostBackward(probs, sel, dw, T, E, k, norm);
        Check.Close("dLogits", dLogits.Download(), expected.Select(v => (double)HostDtype.Round(dtype, v)).ToArray(), dtype);
    }

    // ---------------------------------------------------------------- validation
    [TestMethod]
    public void Forward_RejectsBadArgumentsBeforeLaunch()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var logits = new DeviceBuffer<float>(ctx, 4 * 8);
        using var probs = new DeviceBuffer<float>(ctx, 4 * 8);
        using var sel = new DeviceBuffer<int>(ctx, 4 * 2);
        using var w = new DeviceBuffer<float>(ctx, 4 * 2);
        MoeKernels kernels = MoeKernels.For(ctx);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            kernels.RouterForward(stream, ScalarType.Float32, logits, probs, sel, w, 4, 8, 9, true));      // k > E
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            kernels.RouterForward(stream, ScalarType.Float32, logits, probs, sel, w, 4, 257, 2, true));    // E > 256
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            kernels.RouterForward(stream, ScalarType.Float32, logits, probs, sel, w, -1, 8, 2, true));     // T < 0
        var ex = Assert.ThrowsExactly<ArgumentException>(() =>
            kernels.RouterForward(stream, ScalarType.Float32, logits, probs, sel, w, 5, 8, 2, true));      // T=5 too big
        Assert.AreEqual("logits", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentException>(() =>
            kernels.RouterForward(stream, ScalarType.Float32, logits, probs, DeviceRange.Null, w, 4, 8, 2, true));
        Assert.AreEqual("selected", ex.ParamName);
    }
}
