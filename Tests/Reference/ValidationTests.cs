using MoeNative.Reference;
using MoeNative.Tests.Support;
using MoeNative.Interop;

namespace MoeNative.Tests.Reference;

/// <summary>Bad input gets an ArgumentException naming the parameter and the expected shape, before any work.</summary>
[TestClass]
public sealed class ValidationTests
{
    private static readonly MoeConfig Tiny = MoeConfig.Preset("tiny");

    [TestMethod]
    [DataRow("hf")]
    [DataRow("grouped")]
    public void InputOfTheWrongWidthIsRejected(string impl)
    {
        MoeReference block = MoeReference.Create(impl, MoeWeights.Random(Tiny, 1), ScalarType.Float32);
        ArgumentException e = Assert.Throws<ArgumentException>(() => block.Forward(new float[33]));
        Assert.AreEqual("x", e.ParamName);
        StringAssert.Contains(e.Message, "[T,H=32]");
    }

    [TestMethod]
    [DataRow(new[] { 0, 8 }, "out of range [0, 8)", DisplayName = "expert id = E")]
    [DataRow(new[] { -3, 1 }, "out of range", DisplayName = "negative expert id")]
    [DataRow(new[] { 2, 2 }, "selected twice", DisplayName = "repeated expert")]
    public void PrecomputedRoutingWithBadIdsIsRejected(int[] selected, string expected)
    {
        var block = new GroupedMoeReference(MoeWeights.Random(Tiny, 2), ScalarType.Float32);
        var routing = new MoeRouting(1, 2, selected, [0.5f, 0.5f]);
        ArgumentException e = Assert.Throws<ArgumentException>(() => block.Forward(new float[32], routing));
        Assert.AreEqual("routing", e.ParamName);
        StringAssert.Contains(e.Message, expected);
    }

    [TestMethod]
    public void RoutingForAnotherTokenCountOrKIsRejected()
    {
        var block = new HfMoeReference(MoeWeights.Random(Tiny, 3), ScalarType.Float32);
        StringAssert.Contains(Assert.Throws<ArgumentException>(() => block.Forward(new float[64], new MoeRouting(1, 2, [0, 1], [1f, 0f]))).Message, "T=1");
        StringAssert.Contains(Assert.Throws<ArgumentException>(() => block.Forward(new float[32], new MoeRouting(1, 1, [0], [1f]))).Message, "k=1");
        StringAssert.Contains(Assert.Throws<ArgumentException>(() => new MoeRouting(2, 2, [0, 1, 2], [1f, 1f, 1f, 1f])).Message, "[T=2,k=2]");
    }

    [TestMethod]
    public void GradientOfTheWrongShapeIsRejected()
    {
        var block = new GroupedMoeReference(MoeWeights.Random(Tiny, 4), ScalarType.Float32);
        MoeIntermediates f = block.Forward(new float[64]);
        ArgumentException e = Assert.Throws<ArgumentException>(() => block.Backward(f, new float[32]));
        Assert.AreEqual("dY", e.ParamName);
        StringAssert.Contains(e.Message, "[T=2,H=32]");
        Assert.Throws<InvalidOperationException>(() => new HfMoeReference(MoeWeights.Random(Tiny, 4), ScalarType.Float32).Backward(new float[32]));
    }

    [TestMethod]
    public void IntermediatesOfAnotherDtypeAreRejected()
    {
        MoeWeights w = MoeWeights.Random(Tiny, 5, ScalarType.BFloat16);
        MoeIntermediates f = new GroupedMoeReference(w, ScalarType.BFloat16).Forward(new float[32]);
        var fp32 = new GroupedMoeReference(w, ScalarType.Float32);
        Assert.AreEqual("saved", Assert.Throws<ArgumentException>(() => fp32.Backward(f, new float[32])).ParamName);
    }

    [TestMethod]
    [DataRow(0, DisplayName = "gate")]
    [DataRow(1, DisplayName = "gate_up_proj")]
    [DataRow(2, DisplayName = "down_proj")]
    public void WeightsOfTheWrongLengthAreRejected(int which)
    {
        float[] r = new float[Tiny.GateElements], gu = new float[Tiny.GateUpProjElements], d = new float[Tiny.DownProjElements];
        string[] names = ["gate", "gateUpProj", "downProj"];
        string[] shapes = ["[E=8,H=32]", "[E=8,2I=32,H=32]", "[E=8,H=32,I=16]"];
        ArgumentException e = Assert.Throws<ArgumentException>(() => new MoeWeights(Tiny,
            which == 0 ? new float[1] : r, which == 1 ? new float[1] : gu, which == 2 ? new float[1] : d));
        Assert.AreEqual(names[which], e.ParamName);
        StringAssert.Contains(e.Message, shapes[which]);
    }

    [TestMethod]
    public void RandomWeightsAreDeterministicRoundedAndUnitScale()
    {
        MoeWeights a = MoeWeights.Random(Tiny, 6, ScalarType.BFloat16), b = MoeWeights.Random(Tiny, 6, ScalarType.BFloat16);
        CollectionAssert.AreEqual(a.GateUpProj, b.GateUpProj);
        Assert.IsTrue(StoragePrecision.IsRepresentable(a.GateUpProj, ScalarType.BFloat16), "rounded to bf16");
        double rms = Math.Sqrt(a.GateUpProj.Average(v => (double)v * v));
        Assert.AreEqual(1 / Math.Sqrt(Tiny.HiddenSize), rms, 0.2 / Math.Sqrt(Tiny.HiddenSize), "std 1/sqrt(H)");
        CollectionAssert.AreNotEqual(a.GateUpProj, MoeWeights.Random(Tiny, 7, ScalarType.BFloat16).GateUpProj, "the seed matters");
    }

    [TestMethod]
    public void ExpertViewsSliceTheFusedLayout()
    {
        MoeWeights w = MoeWeights.Random(Tiny, 8);
        int ih = Tiny.IntermediateSize * Tiny.HiddenSize;
        Assert.AreEqual(w.GateUpProj[3 * 2 * ih], w.GateProjOf(3)[0]);
        Assert.AreEqual(w.GateUpProj[3 * 2 * ih + ih + 5], w.UpProjOf(3)[5]);
        Assert.AreEqual(w.DownProj[7 * ih + 2], w.DownProjOf(7)[2]);
        Assert.Throws<ArgumentOutOfRangeException>(() => w.GateProjOf(8).ToArray());
    }

    [TestMethod]
    public void InputsAreRoundedToTheStorageDtypeBeforeUse()
    {
        MoeWeights w = MoeWeights.Random(Tiny, 9, ScalarType.BFloat16);
        float[] x = TensorRandom.Normal(3 * 32, 10); // not bf16-representable
        MoeIntermediates f = new HfMoeReference(w, ScalarType.BFloat16).Forward(x);
        Assert.IsTrue(StoragePrecision.IsRepresentable(f.Input, ScalarType.BFloat16));
        Assert.IsTrue(StoragePrecision.IsRepresentable(f.Output, ScalarType.BFloat16));
        Assert.IsTrue(StoragePrecision.IsRepresentable(f.FirstGemm, ScalarType.BFloat16));
        Assert.IsFalse(StoragePrecision.IsRepresentable(x, ScalarType.BFloat16), "the caller's array is not modified");
    }
}
