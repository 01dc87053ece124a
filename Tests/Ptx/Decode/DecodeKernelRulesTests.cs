using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Decode;

/// <summary>CPU checks of what the decode kernels accept and of the option that picks them.</summary>
[TestClass]
public sealed class DecodeKernelRulesTests
{
    [TestMethod]
    [DataRow(ScalarType.BFloat16, 128, 2048, 768, true, DisplayName = "Qwen3-30B-A3B bf16")]
    [DataRow(ScalarType.Float16, 128, 4096, 1536, true, DisplayName = "Qwen3-235B-A22B fp16")]
    [DataRow(ScalarType.BFloat16, 256, 8, 8, true, DisplayName = "E = 256, smallest H and I")]
    [DataRow(ScalarType.Float32, 128, 2048, 768, false, DisplayName = "fp32: no decode entries")]
    [DataRow(ScalarType.BFloat16, 257, 2048, 768, false, DisplayName = "E > 256")]
    [DataRow(ScalarType.BFloat16, 0, 2048, 768, false, DisplayName = "E = 0")]
    [DataRow(ScalarType.BFloat16, 128, 2044, 768, false, DisplayName = "H not a multiple of 8")]
    [DataRow(ScalarType.BFloat16, 128, 2048, 764, false, DisplayName = "I not a multiple of 8")]
    [DataRow(ScalarType.BFloat16, 128, 0, 768, false, DisplayName = "H = 0")]
    public void CanDecode_FollowsTheKernelsLimits(ScalarType dtype, int experts, int hidden, int inter, bool expected) =>
        Assert.AreEqual(expected, MoeKernels.CanDecode(dtype, experts, hidden, inter));

    [TestMethod]
    public void DecodeAligned_NeedsSixteenBytes()
    {
        Assert.IsTrue(MoeKernels.DecodeAligned(new DeviceRange(0x1000, 64), new DeviceRange(0x2010, 64)));
        Assert.IsFalse(MoeKernels.DecodeAligned(new DeviceRange(0x1000, 64), new DeviceRange(0x2008, 64)));
    }

    [TestMethod]
    [DataRow(1, 1)]
    [DataRow(2, 2)]
    [DataRow(3, 4)]
    [DataRow(4, 4)]
    [DataRow(5, 8)]
    [DataRow(8, 8)]
    [DataRow(64, 8)]
    public void RowsPerPass_IsTheNarrowestEntryCoveringMinTAndEight(int tokens, int rows)
    {
        Assert.AreEqual(rows, MoeKernels.DecodeRowsPerPass(tokens));
        CollectionAssert.Contains(MoeKernelModules.DecodeRowsPerPass.ToArray(), rows, "the module has no entry for this width");
    }

    [TestMethod]
    public void CounterCount_IsOnePerEightColumns() => Assert.AreEqual(256, MoeKernels.DecodeCounterCount(2048));

    [TestMethod]
    public void Describe_NamesANonDefaultDecodeMode()
    {
        Assert.AreEqual("plain", new FusedBlockOptions().Describe());
        Assert.AreEqual("decode=off", new FusedBlockOptions { Decode = DecodeMode.Off }.Describe());
        Assert.AreEqual("permute_y decode=always", new FusedBlockOptions { PermuteY = true, Decode = DecodeMode.Always }.Describe());
    }
}
