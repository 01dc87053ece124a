using MoeNative.Reference;
using MoeNative.Tests.Support;
using MoeNative.Interop;

namespace MoeNative.Tests.Reference;

/// <summary>
/// The flaky GPU row HfReference_Vs_GroupedCublas(qwen3-30b-a3b, fp16, T=1) on the CPU (issue 12). Its inputs were
/// drawn from a per-process random seed (HashCode.Combine), so its failing case cannot be drawn again; these input
/// seeds reproduce the same failure with the host GEMMs at the same H, E, k and dtype (I = 64 keeps the weights
/// small; I does not enter the router gradient's conditioning). Findings pinned here:
/// (1) with the strict scaled rule the router gradient fails on rounding alone;
/// (2) the cause is the forward: the grouped backward run on the HF loop's own forward state (same U, only dw kept in
///     fp32 instead of fp16) passes the strict rule, so HF's extra rounding of silu(gate) (different U, so different
///     dot products dw = ⟨dY, U⟩, whose near-cancellation the router backward amplifies) is the difference;
/// (3) the first-order scale (<see cref="RouterGradientScale"/>) passes, and still fails a 2% error in the top expert's row.
/// </summary>
[TestClass]
public sealed class RouterGradientScaleTests
{
    private static readonly MoeConfig Qwen3RouterShape = new(HiddenSize: 2048, IntermediateSize: 64, NumExperts: 128, TopK: 8) { Name = "qwen3-router-shape" };
    private const ScalarType DType = ScalarType.Float16;
    private static readonly Lazy<MoeWeights> Weights = new(() => MoeWeights.Random(Qwen3RouterShape, 20261126 + (int)DType, DType));

    [TestMethod]
    [DataRow(4)]
    [DataRow(49)]
    public void HfVsGrouped_T1_Fp16_RouterGradient(int inputSeed)
    {
        double tol = Tolerance.For(DType);
        float[] x = TensorRandom.Normal(Qwen3RouterShape.HiddenSize, inputSeed, 1f, DType);             // [1,H]
        float[] dY = TensorRandom.Normal(Qwen3RouterShape.HiddenSize, inputSeed ^ 0x5A5A5A, 1f, DType); // [1,H]
        var hf = new HfMoeReference(Weights.Value, DType);
        var grouped = new GroupedMoeReference(Weights.Value, DType);
        MoeIntermediates hfForward = hf.Forward(x);
        MoeGradients hfGrads = hf.Backward(hfForward, dY);
        MoeGradients groupedGrads = grouped.Backward(grouped.Forward(x, hfForward.Routing), dY);
        MoeGradients groupedOnHfForward = grouped.Backward(hfForward, dY);
        float[] scale = RouterGradientScale.Compute(hfForward, dY);
        string seed = $"input seed {inputSeed}";

        Comparison strict = TensorComparison.Scaled("grad_gate", groupedGrads.Gate, hfGrads.Gate, tol);
        Assert.IsFalse(strict.AllClose, $"{seed}: the strict rule is expected to fail here (the H200 symptom): {strict}");
        Comparison sameForward = TensorComparison.Scaled("grad_gate", groupedOnHfForward.Gate, hfGrads.Gate, tol);
        Assert.IsTrue(sameForward.AllClose, $"{seed}: with the forward state shared only dw's rounding differs, within the strict rule: {sameForward}");
        Comparison scaled = TensorComparison.ScaledWithFloor("grad_gate", groupedGrads.Gate, hfGrads.Gate, tol, scale);
        Assert.IsTrue(scaled.AllClose, $"{seed}: {scaled}");

        int top = hfForward.Routing.Selected[0], h = Qwen3RouterShape.HiddenSize;
        float[] broken = (float[])groupedGrads.Gate.Clone();
        for (int col = 0; col < h; col++) broken[top * h + col] *= 1.02f;
        Comparison bug = TensorComparison.ScaledWithFloor("grad_gate", broken, hfGrads.Gate, tol, scale);
        Assert.IsFalse(bug.AllClose, $"{seed}: a 2% error in the top expert's row must fail: {bug}");
    }
}
