using MoeNative.Reference;
using MoeNative.Interop;

namespace MoeNative.Tests.Reference;

/// <summary>The comparison rules every test and <c>verify</c> judge by, against hand-computed cases.</summary>
[TestClass]
public sealed class TensorComparisonTests
{
    [TestMethod]
    [DataRow(ScalarType.BFloat16, 1e-2)]
    [DataRow(ScalarType.Float16, 1e-3)]
    [DataRow(ScalarType.Float32, 1e-5)]
    public void Tolerance_PerDtype(ScalarType dtype, double expected) => Assert.AreEqual(expected, TensorTolerance.For(dtype));

    [TestMethod]
    [DataRow(1, 1.0)]
    [DataRow(2, 1.0)]
    [DataRow(4, 1.4142135623730951)]
    [DataRow(8, 2.0)]
    public void HfAccumulatedOutputTolerance_WidenedBySqrtTwoKOverTwo(int topK, double factor) =>
        Assert.AreEqual(1e-2 * factor, TensorTolerance.ForHfAccumulatedOutput(ScalarType.BFloat16, topK), 1e-15);

    [TestMethod]
    public void Scaled_Metrics_MatchHandComputation()
    {
        // diff = (0, 0.3, -0.4, 0): max abs 0.4; ‖diff‖ = 0.5 over max(‖e‖ = 5, √4) -> 0.1;
        // atol = 1e-2·max(1, 4) = 0.04: elements 1 and 2 fail, element 1 first.
        TensorComparison c = TensorComparison.Scaled("t", [1f, 2.3f, 3.6f, 2f], [1f, 2f, 4f, 2f], 1e-2);

        Assert.AreEqual(0.4, c.MaxAbsError, 1e-6);
        Assert.AreEqual(0.1, c.RelativeNormError, 1e-6);
        Assert.AreEqual(2, c.Mismatches);
        Assert.AreEqual(1, c.FirstMismatch);
        Assert.AreEqual(2.3f, (float)c.FirstActual);
        Assert.AreEqual(0.04, c.Atol, 1e-12);
        Assert.IsFalse(c.AllClose, c.ToString());
    }

    [TestMethod]
    [DataRow(new[] { 1.004f, 2f, 3f }, new[] { 1f, 2f, 3f }, true, DisplayName = "within atol + rtol|e|")]
    [DataRow(new[] { 1.05f, 2f, 3f }, new[] { 1f, 2f, 3f }, false, DisplayName = "outside atol·max|e| + rtol|e|")]
    [DataRow(new[] { 10f, 20f, 30f, 0.35f }, new[] { 10f, 20f, 30f, 0.1f }, true, DisplayName = "small element within the scaled atol")]
    [DataRow(new[] { 10.15f, 10.15f, 10.15f, 10.15f }, new[] { 10f, 10f, 10f, 10f }, false, DisplayName = "relative norm above tol")]
    [DataRow(new[] { 0.005f, -0.005f, 0f }, new[] { 0f, 0f, 0f }, true, DisplayName = "zero reference, noise")]
    [DataRow(new[] { 1f, float.NaN, 3f }, new[] { 1f, 2f, 3f }, false, DisplayName = "NaN")]
    [DataRow(new[] { 1f, 2f, 3f }, new[] { 1f, float.NaN, 3f }, false, DisplayName = "NaN in the reference")]
    public void Scaled_PassRule(float[] actual, float[] expected, bool passes)
    {
        TensorComparison c = TensorComparison.Scaled("t", actual, expected, 1e-2);

        Assert.AreEqual(passes, c.AllClose, c.ToString());
    }

    [TestMethod]
    public void Scaled_Empty_Passes()
    {
        TensorComparison c = TensorComparison.Scaled("t", [], [], 1e-2);

        Assert.IsTrue(c.AllClose, c.ToString());
        Assert.AreEqual(0, c.Count);
    }

    [TestMethod]
    [DataRow(new[] { 10f, 20f, 30f, 0.35f }, new[] { 10f, 20f, 30f, 0.1f }, false, DisplayName = "no magnitude scaling")]
    [DataRow(new[] { 1.015f, 2f, 3f }, new[] { 1f, 2f, 3f }, true, DisplayName = "within atol + rtol|e|")]
    [DataRow(new[] { 0.5f }, new[] { 0f }, false, DisplayName = "zero reference")]
    public void Elementwise_PassRule(float[] actual, float[] expected, bool passes)
    {
        TensorComparison c = TensorComparison.Elementwise("t", actual, expected, 1e-2, 1e-2);

        Assert.AreEqual(passes, c.AllClose, c.ToString());
    }

    [TestMethod]
    public void Elementwise_RelativeNorm_ZeroAndInfinity()
    {
        Assert.AreEqual(0.0, TensorComparison.Elementwise<double>("t", [0.0, 0.0], [0.0, 0.0], 0, 0).RelativeNormError);
        Assert.AreEqual(double.PositiveInfinity, TensorComparison.Elementwise<double>("t", [1e-9, 0.0], [0.0, 0.0], 1, 0).RelativeNormError);
    }

    [TestMethod]
    public void Exact_CountsDifferences()
    {
        TensorComparison c = TensorComparison.Exact("gather", [0, 1, 5, 3], [0, 1, 2, 4]);

        Assert.AreEqual(2, c.Mismatches);
        Assert.AreEqual(2, c.FirstMismatch);
        Assert.AreEqual(3.0, c.MaxAbsError);
        Assert.IsFalse(c.AllClose);
        Assert.IsTrue(TensorComparison.Exact("gather", [0, 1], [0, 1]).AllClose);
    }

    [TestMethod]
    public void LengthMismatch_Throws()
    {
        ArgumentException e = Assert.ThrowsExactly<ArgumentException>(() => TensorComparison.Scaled("router_logits", [1f], [1f, 2f], 1e-2));

        Assert.Contains("router_logits", e.Message);
    }
}
