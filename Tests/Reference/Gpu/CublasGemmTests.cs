using MoeNative.Interop;
using MoeNative.Reference;
using MoeNative.Tests.Support;

namespace MoeNative.Tests.Reference.Gpu;

/// <summary>
/// The cuBLAS backend equals the host backend: each GEMM layout on odd sizes, then the whole grouped reference
/// (forward intermediates and the five gradients) at Qwen3-30B-A3B dims. Without a GPU: Inconclusive.
/// </summary>
[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class CublasGemmTests
{
    [TestMethod]
    [DataRow(1, 1, 1)]
    [DataRow(3, 5, 7)]
    [DataRow(17, 65, 33)]
    [DataRow(128, 1536, 2048, DisplayName = "Qwen3-30B first GEMM of 128 rows")]
    [DataRow(0, 4, 4)]
    [DataRow(4, 4, 0, DisplayName = "K = 0 gives zeros")]
    public void EveryLayoutMatchesTheHostBackend(int m, int n, int k)
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var gemm = new CublasGemm(ctx);
        float[] a = TensorRandom.Normal((long)m * k, m + 11), b = TensorRandom.Normal((long)n * k, n + 12);
        var expected = new float[m * n];
        var actual = new float[m * n];
        double tol = 1e-4; // fp32 accumulation in different orders over K ≤ 2048
        foreach (string layout in new[] { "NT", "NN", "TN" })
        {
            Array.Fill(actual, float.NaN); // poisoned: unwritten elements fail
            Action<IGemm<float>, float[]> run = layout switch
            {
                "NT" => (g, c) => g.MatMulNT(a, b, c, m, n, k, ScalarType.Float32),
                "NN" => (g, c) => g.MatMulNN(a, b, c, m, n, k, ScalarType.Float32),
                _ => (g, c) => g.MatMulTN(a, b, c, m, n, k, ScalarType.Float32),
            };
            run(HostGemm.Instance, expected);
            run(gemm, actual);
            Numerics.AssertAllClose(layout, actual, expected, tol);
        }
    }

    [TestMethod]
    [DataRow(1, ScalarType.BFloat16)]
    [DataRow(128, ScalarType.BFloat16)]
    [DataRow(1024, ScalarType.BFloat16)]
    [DataRow(128, ScalarType.Float32)]
    [DataRow(128, ScalarType.Float16)]
    public void GroupedReferenceOnCublasEqualsHostAtQwen3_30B_A3B(int tokens, ScalarType dtype)
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var gemm = new CublasGemm(ctx);
        MoeConfig c = MoeConfig.Preset("qwen3-30b-a3b");
        MoeWeights weights = MoeWeights.Random(c, 42 + tokens, dtype);
        float[] x = TensorRandom.Normal((long)tokens * c.HiddenSize, tokens + 1, 1f, dtype);
        float[] dY = TensorRandom.Normal((long)tokens * c.HiddenSize, tokens + 2, 1f, dtype);

        var host = new GroupedMoeReference(weights, dtype, HostGemm.Instance);
        var gpu = new GroupedMoeReference(weights, dtype, gemm);
        MoeIntermediates h = host.Forward(x);
        MoeIntermediates d = gpu.Forward(x, h.Routing); // same routing: top-k is discontinuous
        MoeGradients gh = host.Backward(dY);
        MoeGradients gd = gpu.Backward(dY);

        double tol = Tolerance.For(dtype);
        Comparison[] results =
        [
            Numerics.CompareScaled("router_logits", d.RouterLogits, h.RouterLogits, tol),
            Numerics.CompareScaled("first_gemm", d.FirstGemm, h.FirstGemm, tol),
            Numerics.CompareScaled("intermediate", d.Intermediate, h.Intermediate, tol),
            Numerics.CompareScaled("second_gemm", d.SecondGemm, h.SecondGemm, tol),
            Numerics.CompareScaled("output", d.Output, h.Output, tol),
            Numerics.CompareScaled("grad_hidden_states", gd.HiddenStates, gh.HiddenStates, tol),
            Numerics.CompareScaled("grad_gate", gd.Gate, gh.Gate, tol),
            Numerics.CompareScaled("grad_gate_up_proj", gd.GateUpProj, gh.GateUpProj, tol),
            Numerics.CompareScaled("grad_down_proj", gd.DownProj, gh.DownProj, tol),
        ];
        foreach (Comparison r in results) Console.WriteLine(r);
        Numerics.AssertAllClose(results);
    }
}
