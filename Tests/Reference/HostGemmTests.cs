using MoeNative.Reference;
using MoeNative.Tests.Support;
using MoeNative.Interop;

namespace MoeNative.Tests.Reference;

/// <summary>HostGemm against plain float64 triple loops written here, on odd and degenerate sizes.</summary>
[TestClass]
public sealed class HostGemmTests
{
    [TestMethod]
    [DataRow(1, 1, 1)]
    [DataRow(3, 5, 7)]
    [DataRow(17, 65, 33)]
    [DataRow(64, 130, 257, DisplayName = "multi-threaded, several column tiles")]
    [DataRow(2, 600, 9, DisplayName = "axpy tile boundary (256)")]
    [DataRow(0, 4, 4)]
    [DataRow(4, 0, 4)]
    [DataRow(4, 4, 0, DisplayName = "K = 0 gives zeros")]
    public void AllThreeLayoutsMatchNaiveLoops(int m, int n, int k)
    {
        float[] a = TensorRandom.Normal((long)m * k, m + 1), b = TensorRandom.Normal((long)n * k, n + 2);
        var c = new float[m * n];
        double tol = 1e-4; // fp32 accumulation over K ≤ 257 against float64
        // NT: A [M,K], B [N,K]
        Array.Fill(c, float.NaN);
        HostGemm.Instance.MatMulNT(a, b, c, m, n, k, ScalarType.Float32);
        Numerics.AssertAllClose("NT", c, Naive(m, n, k, (i, kk) => a[i * k + kk], (j, kk) => b[j * k + kk]), tol);
        // NN: A [M,K], B [K,N]
        Array.Fill(c, float.NaN);
        HostGemm.Instance.MatMulNN(a, b, c, m, n, k, ScalarType.Float32);
        Numerics.AssertAllClose("NN", c, Naive(m, n, k, (i, kk) => a[i * k + kk], (j, kk) => b[kk * n + j]), tol);
        // TN: A [K,M], B [K,N]
        Array.Fill(c, float.NaN);
        HostGemm.Instance.MatMulTN(a, b, c, m, n, k, ScalarType.Float32);
        Numerics.AssertAllClose("TN", c, Naive(m, n, k, (i, kk) => a[kk * m + i], (j, kk) => b[kk * n + j]), tol);
    }

    private static float[] Naive(int m, int n, int k, Func<int, int, float> a, Func<int, int, float> b)
    {
        var c = new float[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int kk = 0; kk < k; kk++) s += (double)a(i, kk) * b(j, kk);
                c[i * n + j] = (float)s;
            }
        return c;
    }

    [TestMethod]
    [DataRow(ScalarType.BFloat16)]
    [DataRow(ScalarType.Float16)]
    public void OutputIsRoundedToTheRequestedDtype(ScalarType dtype)
    {
        float[] a = TensorRandom.Normal(8 * 16, 3), b = TensorRandom.Normal(8 * 16, 4);
        var c = new float[64];
        var c32 = new float[64];
        HostGemm.Instance.MatMulNT(a, b, c, 8, 8, 16, dtype);
        HostGemm.Instance.MatMulNT(a, b, c32, 8, 8, 16, ScalarType.Float32);
        for (int i = 0; i < 64; i++) Assert.AreEqual(StoragePrecision.Round(c32[i], dtype), c[i], $"c[{i}]");
    }

    [TestMethod]
    public void ShortBuffersAreRejected()
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => HostGemm.Instance.MatMulNT(new float[5], new float[6], new float[4], 2, 2, 3, ScalarType.Float32));
        Assert.AreEqual("a", e.ParamName);
        e = Assert.Throws<ArgumentException>(() => HostGemm.Instance.MatMulNN(new float[6], new float[6], new float[3], 2, 2, 3, ScalarType.Float32));
        Assert.AreEqual("c", e.ParamName);
    }

    [TestMethod]
    public void Qwen3_30B_A3B_ForwardAndBackwardAtT64RunInWellUnderAMinute()
    {
        // The brief's speed bar for the host backend: Qwen3-30B-A3B dims, T=64, forward + backward on 2 cores.
        // Setup shortcut: one expert's random weights copied to all 128 (generating 604M normals would dominate the
        // test's time); the router is random, so the tokens still spread over the experts.
        MoeConfig c = MoeConfig.Preset("qwen3-30b-a3b");
        int e = c.NumExperts;
        float[] gateUp0 = TensorRandom.Normal(c.GateUpProjElements / e, 1, 1f / MathF.Sqrt(c.HiddenSize), ScalarType.BFloat16);
        float[] down0 = TensorRandom.Normal(c.DownProjElements / e, 2, 1f / MathF.Sqrt(c.IntermediateSize), ScalarType.BFloat16);
        var gateUp = new float[c.GateUpProjElements];
        var down = new float[c.DownProjElements];
        for (int x = 0; x < e; x++)
        {
            gateUp0.CopyTo(gateUp, (long)x * gateUp0.Length);
            down0.CopyTo(down, (long)x * down0.Length);
        }
        var w = new MoeWeights(c, TensorRandom.Normal(c.GateElements, 3, 1f / MathF.Sqrt(c.HiddenSize), ScalarType.BFloat16), gateUp, down)
        { KnownDType = ScalarType.BFloat16 };
        var block = new GroupedMoeReference(w, ScalarType.BFloat16);
        float[] input = TensorRandom.Normal(64L * c.HiddenSize, 4, 1f, ScalarType.BFloat16);
        float[] dY = TensorRandom.Normal(64L * c.HiddenSize, 5, 1f, ScalarType.BFloat16);

        var timer = System.Diagnostics.Stopwatch.StartNew();
        MoeIntermediates f = block.Forward(input);
        MoeGradients g = block.Backward(dY);
        timer.Stop();
        Assert.AreEqual(0, Numerics.CountNaN(f.Output) + Numerics.CountNaN(g.HiddenStates));
        Assert.IsGreaterThan(32, f.TokenCounts.Count(n => n > 0), "tokens spread over many experts");
        Assert.IsLessThan(60.0, timer.Elapsed.TotalSeconds, $"forward + backward took {timer.Elapsed.TotalSeconds:F1} s");
    }
}
