using MoeNative.Blocks;
using MoeNative.Reference;
using MoeNative.Interop;

namespace MoeNative.Tests.Reference;

/// <summary>The largest T of the host reference and of the device blocks: stated, and checked before any allocation.</summary>
[TestClass]
public sealed class LimitsTests
{
    private static readonly MoeConfig Qwen3 = MoeConfig.Preset("qwen3-30b-a3b");
    private static readonly MoeConfig Qwen2Dims = new(HiddenSize: 3584, IntermediateSize: 2560, NumExperts: 64, TopK: 8) { Name = "qwen2-57b-a14b dims" };

    [TestMethod]
    public void MaxReferenceTokens_IsArrayMaxLengthOverTheWidestPerTokenRow()
    {
        // Hand-computed: Array.MaxLength = 2147483591; widest row k*max(2I,H): Qwen3-30B 8*2048, Qwen2-57B 8*5120.
        Assert.AreEqual(2147483591, Array.MaxLength);
        Assert.AreEqual(131071, MoeLimits.MaxReferenceTokens(Qwen3));
        Assert.AreEqual(52428, MoeLimits.MaxReferenceTokens(Qwen2Dims));
    }

    [TestMethod]
    public void MaxDeviceTokens_IsInt32RowsOverK()
    {
        Assert.AreEqual(int.MaxValue / 8, MoeLimits.MaxDeviceTokens(Qwen3));
        Assert.AreEqual(1 << 30, MoeLimits.MaxDeviceTokens(new MoeConfig(8, 8, 1, 1)), "k = 1: the power-of-two shape class caps T at 2^30");
    }

    [TestMethod]
    [DataRow("hf")]
    [DataRow("grouped")]
    public void ReferenceForward_PastTheLimit_FailsUpFrontNamingX(string impl)
    {
        // H = 1 keeps x tiny while [T*k,2I] is huge: k*2I = 2^24 per token, so T = 128 needs 2^31 > Array.MaxLength
        // elements. Zero weights: nothing random to draw; the check must come before the forward allocates.
        var c = new MoeConfig(HiddenSize: 1, IntermediateSize: 1 << 22, NumExperts: 2, TopK: 2);
        var weights = new MoeWeights(c, new float[c.GateElements], new float[c.GateUpProjElements], new float[c.DownProjElements]);
        MoeReference block = MoeReference.Create(impl, weights, ScalarType.Float32);
        Assert.AreEqual(127, MoeLimits.MaxReferenceTokens(c));
        long before = GC.GetTotalAllocatedBytes(precise: true);
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => block.Forward(new float[128]));
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        Assert.AreEqual("x", e.ParamName);
        StringAssert.Contains(e.Message, "T = 128 is too large");
        StringAssert.Contains(e.Message, "at most T = 127");
        Assert.IsLessThan(1L << 20, allocated, $"{allocated} bytes allocated before the check");
    }

    [TestMethod]
    public void DeviceForwardShapes_PastTheLimit_FailsNamingTokens()
    {
        int max = MoeLimits.MaxDeviceTokens(Qwen3);
        long th = (long)(max + 1) * Qwen3.HiddenSize, tk = (long)(max + 1) * Qwen3.TopK;
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            BlockChecks.ForwardShapes(Qwen3, ScalarType.BFloat16, max + 1, th, th, tk, tk));
        Assert.AreEqual("tokens", e.ParamName);
        StringAssert.Contains(e.Message, $"at most T = {max}");
        BlockChecks.ForwardShapes(Qwen3, ScalarType.BFloat16, max, th, th, tk, tk); // the limit itself is accepted
    }

    [TestMethod]
    public void CheckedProduct_OverflowAndNegativeAreNull_ZeroWins()
    {
        Assert.AreEqual(2348810240L, MoeLimits.CheckedProduct([64, 2 * 2560, 3584, 2])); // Qwen2-57B grad_gate_up F32 bytes: past 2 GiB
        Assert.IsNull(MoeLimits.CheckedProduct([1L << 32, 1L << 32]));
        Assert.IsNull(MoeLimits.CheckedProduct([4, -1]));
        Assert.AreEqual(0L, MoeLimits.CheckedProduct([1L << 40, 1L << 40, 0]));
        Assert.AreEqual(1L, MoeLimits.CheckedProduct([]));
    }
}
