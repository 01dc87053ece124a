using MoeNative.Reference;
using MoeNative.Tests.Support;
using MoeNative.Interop;

namespace MoeNative.Tests.Reference;

/// <summary>
/// The HF per-expert loop and the grouped reference compute the same function with different rounding points:
/// every forward intermediate and every gradient must agree within the dtype's tolerance (fp32 1e-5, fp16 1e-3,
/// bf16 1e-2; absolute part scaled by the tensor's magnitude, see <see cref="Numerics.CompareScaled"/>), under the
/// same routing (the grouped block is given the HF block's routing, as docs/DESIGN.md asks).
/// </summary>
[TestClass]
public sealed class HfVersusGroupedTests
{
    [TestMethod]
    [DataRow("tiny", 1, ScalarType.Float32)]
    [DataRow("tiny", 16, ScalarType.BFloat16)]
    [DataRow("tiny", 16, ScalarType.Float16)]
    [DataRow("tiny-nonorm", 9, ScalarType.Float32)]
    [DataRow("tiny-nonorm", 9, ScalarType.BFloat16)]
    [DataRow("tiny-k1", 8, ScalarType.BFloat16)]
    [DataRow("tiny-k1", 1, ScalarType.Float16)]
    [DataRow("small-k1", 33, ScalarType.Float32)]
    [DataRow("small-k1", 33, ScalarType.BFloat16)]
    [DataRow("small", 64, ScalarType.Float32)]
    [DataRow("small", 64, ScalarType.BFloat16)]
    [DataRow("small", 64, ScalarType.Float16)]
    [DataRow("unaligned", 17, ScalarType.Float32)]
    [DataRow("unaligned", 17, ScalarType.Float16)]
    [DataRow("unaligned", 17, ScalarType.BFloat16)]
    public void ForwardAndGradientsAgree(string preset, int tokens, ScalarType dtype)
    {
        MoeConfig c = MoeConfig.Preset(preset);
        int seed = 1000 + tokens * 7 + (int)dtype;
        MoeWeights weights = MoeWeights.Random(c, seed, dtype);
        float[] x = ReferenceTestData.Input(tokens, c, seed + 1, dtype);
        float[] dY = TensorRandom.Normal((long)tokens * c.HiddenSize, seed + 2, 1f, dtype);

        var hf = new HfMoeReference(weights, dtype);
        var grouped = new GroupedMoeReference(weights, dtype);
        MoeIntermediates a = hf.Forward(x);
        MoeIntermediates b = grouped.Forward(x, a.Routing);
        MoeGradients ga = hf.Backward(dY);
        MoeGradients gb = grouped.Backward(dY);

        double tol = Tolerance.For(dtype);
        var results = new List<Comparison>
        {
            Numerics.CompareScaled("router_logits", b.RouterLogits, a.RouterLogits, tol),
            Numerics.CompareScaled("first_gemm", b.FirstGemm, a.FirstGemm, tol),
            Numerics.CompareScaled("intermediate", b.Intermediate, a.Intermediate, tol),
            Numerics.CompareScaled("second_gemm", b.SecondGemm, a.SecondGemm, tol),
            Numerics.CompareScaled("unpermuted", b.Unpermuted, a.Unpermuted, tol),
            Numerics.CompareScaled("output", b.Output, a.Output, tol),
            Numerics.CompareScaled("grad_hidden_states", gb.HiddenStates, ga.HiddenStates, tol),
            TensorComparison.ScaledWithFloor("grad_gate", gb.Gate, ga.Gate, tol, RouterGradientScale.Compute(a, dY)),
            Numerics.CompareScaled("grad_gate_proj", gb.GateProj, ga.GateProj, tol),
            Numerics.CompareScaled("grad_up_proj", gb.UpProj, ga.UpProj, tol),
            Numerics.CompareScaled("grad_down_proj", gb.DownProj, ga.DownProj, tol),
        };
        CollectionAssert.AreEqual(a.TokenCounts, b.TokenCounts, "token counts");
        CollectionAssert.AreEqual(a.Gather, b.Gather, "gather");
        CollectionAssert.AreEqual(a.RoutingWeights, b.RoutingWeights, "routing weights");
        Numerics.AssertAllClose(results);
        // The outputs must be non-trivial, or any tolerance passes.
        Assert.IsGreaterThan(10 * tol, a.Output.Max(MathF.Abs), "output magnitude");
    }

    [TestMethod]
    [DataRow(ScalarType.BFloat16)]
    [DataRow(ScalarType.Float16)]
    public void RoundingPointsDifferBetweenHfAndGrouped(ScalarType dtype)
    {
        // The two forwards must not be the same computation in reduced precision (the HF loop rounds act_fn(gate)
        // and every index_add_ step): otherwise the comparison above checks nothing about rounding.
        MoeConfig c = MoeConfig.Preset("small");
        MoeWeights weights = MoeWeights.Random(c, 5, dtype);
        float[] x = ReferenceTestData.Input(32, c, 6, dtype);
        MoeIntermediates a = new HfMoeReference(weights, dtype).Forward(x);
        MoeIntermediates b = new GroupedMoeReference(weights, dtype).Forward(x, a.Routing);
        Assert.IsGreaterThan(0.0, Numerics.MaxAbsError(b.Output, a.Output), "outputs differ somewhere");
        Assert.IsGreaterThan(0.0, Numerics.MaxAbsError(b.Intermediate, a.Intermediate), "intermediates differ somewhere");
        CollectionAssert.AreEqual(a.FirstGemm, b.FirstGemm, "the first GEMM is the same computation in both");
    }

    [TestMethod]
    [DataRow("hf")]
    [DataRow("grouped")]
    public void EmptyInputGivesEmptyOutputsAndZeroWeightGradients(string impl)
    {
        MoeConfig c = MoeConfig.Preset("tiny");
        MoeReference block = MoeReference.Create(impl, MoeWeights.Random(c, 3), ScalarType.BFloat16);
        MoeIntermediates f = block.Forward([]);
        Assert.AreEqual(0, f.Tokens);
        Assert.IsEmpty(f.Output);
        Assert.IsEmpty(f.RouterLogits);
        Assert.AreEqual(0, f.TokenCounts.Sum());
        MoeGradients g = block.Backward([]);
        Assert.IsEmpty(g.HiddenStates);
        Assert.HasCount((int)c.GateUpProjElements, g.GateUpProj);
        Assert.IsTrue(g.GateUpProj.All(v => v == 0) && g.DownProj.All(v => v == 0) && g.Gate.All(v => v == 0), "weight grads are zero");
    }

    [TestMethod]
    public void ForwardMatchesAHandComputedOneTokenCase()
    {
        // H=2, I=1, E=2, k=1: with x = (1, 0) and router rows (1,0),(0,0) expert 0 wins (logit 1 vs 0).
        // gate row (1,0), up row (2,0) => g = 1, u = 2, a = silu(1)·2; down (3,5) => y = w·a·(3,5), w = 1 after renorm.
        var c = new MoeConfig(2, 1, 2, 1, NormTopKProb: true);
        var weights = new MoeWeights(c, gate: [1, 0, 0, 0], gateUpProj: [1, 0, 2, 0, 0, 0, 0, 0], downProj: [3, 5, 0, 0]);
        double silu1 = 1.0 / (1.0 + Math.Exp(-1.0));
        foreach (MoeReference block in new MoeReference[] { new HfMoeReference(weights, ScalarType.Float32), new GroupedMoeReference(weights, ScalarType.Float32) })
        {
            MoeIntermediates f = block.Forward([1f, 0f]);
            CollectionAssert.AreEqual(new[] { 0 }, f.SelectedExperts, block.Name);
            Assert.AreEqual(1f, f.RoutingWeights[0], block.Name);
            Assert.AreEqual(Math.Exp(1) / (Math.Exp(1) + 1), f.RouterProbs[0], 1e-6, block.Name);
            Assert.AreEqual(3 * 2 * silu1, f.Output[0], 1e-5, block.Name);
            Assert.AreEqual(5 * 2 * silu1, f.Output[1], 1e-5, block.Name);
        }
    }
}
