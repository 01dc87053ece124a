using MoeNative.Blocks;
using MoeNative.Reference;

namespace MoeNative.Tests.Blocks.ExpertParallel;

/// <summary>What the expert-parallel block refuses before any upload, exchange or launch (CPU).</summary>
[TestClass]
public sealed class ExpertParallelChecksTests
{
    private static readonly MoeConfig Tiny = MoeConfig.Preset("tiny");

    [TestMethod]
    [DataRow("permute_x")]
    [DataRow("permute_y")]
    [DataRow("fuse_mul_post")]
    [DataRow("decode_always")]
    public void Options_LayoutOptions_Refused(string which)
    {
        FusedBlockOptions kernels = which switch
        {
            "permute_x" => new FusedBlockOptions { PermuteX = true },
            "permute_y" => new FusedBlockOptions { PermuteY = true },
            "fuse_mul_post" => new FusedBlockOptions { FuseMulPost = true },
            _ => new FusedBlockOptions { Decode = DecodeMode.Always },
        };
        var ex = Assert.ThrowsExactly<ArgumentException>(() => ExpertParallelChecks.Options(new ExpertParallelOptions { Kernels = kernels }, "options"));
        Assert.AreEqual("options", ex.ParamName);
    }

    [TestMethod]
    public void Options_NonPositiveOrInfiniteTimeout_Refused()
    {
        foreach (TimeSpan t in (TimeSpan[])[TimeSpan.Zero, TimeSpan.FromSeconds(-1), Timeout.InfiniteTimeSpan])
        {
            var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
                ExpertParallelChecks.Options(new ExpertParallelOptions { ExchangeTimeout = t }, "options"));
            Assert.Contains("never a hang", ex.Message);
        }
        ExpertParallelChecks.Options(ExpertParallelOptions.Default, "options"); // must not throw
    }

    [TestMethod]
    public void Partition_MoreRanksThanExperts_NamesBoth()
    {
        var ex = Assert.ThrowsExactly<ArgumentException>(() => ExpertParallelChecks.Partition(Tiny, 16, "communicator"));
        Assert.AreEqual("communicator", ex.ParamName);
        Assert.Contains("16 ranks", ex.Message);
        Assert.Contains("E = 8", ex.Message);
        Assert.AreEqual(4, ExpertParallelChecks.Partition(Tiny, 2, "communicator").ExpertCount(1));
    }

    [TestMethod]
    public void BackwardShapes_LocalExpertGradients_AreThisRanksExperts()
    {
        // tiny: H=32, I=16, E=8; 2 local experts
        ExpertParallelChecks.BackwardShapes(Tiny, 2, 4, 4 * 32, 4 * 32, 8 * 32, 2 * 32 * 32, 2 * 32 * 16); // exact sizes pass
        var gateUp = Assert.ThrowsExactly<ArgumentException>(() =>
            ExpertParallelChecks.BackwardShapes(Tiny, 2, 4, 4 * 32, 4 * 32, 8 * 32, 2 * 32 * 32 - 1, 2 * 32 * 16));
        Assert.AreEqual("gradients.GateUpProj", gateUp.ParamName);
        Assert.Contains("E_r=2", gateUp.Message);
        var router = Assert.ThrowsExactly<ArgumentException>(() =>
            ExpertParallelChecks.BackwardShapes(Tiny, 2, 4, 4 * 32, 4 * 32, 2 * 32, 2 * 32 * 32, 2 * 32 * 16));
        Assert.AreEqual("gradients.Gate", router.ParamName);
        Assert.Contains("all-reduced", router.Message);
        var dy = Assert.ThrowsExactly<ArgumentException>(() =>
            ExpertParallelChecks.BackwardShapes(Tiny, 2, 4, 3 * 32, 4 * 32, 8 * 32, 2 * 32 * 32, 2 * 32 * 16));
        Assert.AreEqual("dY", dy.ParamName);
    }

    [TestMethod]
    public void Shortage_FewerGpusThanRanks_SaysHowManyAreNeeded()
    {
        Assert.IsNull(ExpertParallelDevices.Shortage(2, 2));
        Assert.IsNull(ExpertParallelDevices.Shortage(1, 8));
        string? message = ExpertParallelDevices.Shortage(8, 1);
        Assert.IsNotNull(message);
        Assert.Contains("needs 8 GPUs", message);
        Assert.Contains("has 1", message);
    }
}
