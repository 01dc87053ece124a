using MoeNative.Blocks;

namespace MoeNative.Tests.Blocks.ExpertParallel;

/// <summary>The expert → rank split: contiguous, complete, balanced to one expert, for N = 1, 2, 4, 8 (CPU).</summary>
[TestClass]
public sealed class ExpertPartitionTests
{
    [TestMethod]
    [DataRow(8, 1)]
    [DataRow(8, 2)]
    [DataRow(8, 4)]
    [DataRow(8, 8)]
    [DataRow(128, 8)]
    [DataRow(10, 4)]
    [DataRow(7, 2)]
    [DataRow(9, 8)]
    public void Partition_EveryExpertOnExactlyOneRank_ContiguousAndBalanced(int experts, int ranks)
    {
        var p = new ExpertPartition(experts, ranks);
        int next = 0;
        for (int r = 0; r < ranks; r++)
        {
            Assert.AreEqual(next, p.FirstExpert(r), $"rank {r} starts where rank {r - 1} ended");
            int count = p.ExpertCount(r);
            Assert.IsTrue(count == experts / ranks || count == experts / ranks + 1, $"rank {r} holds {count}");
            Assert.IsLessThanOrEqualTo(p.MaxExpertsPerRank, count);
            for (int e = next; e < next + count; e++)
                Assert.AreEqual(r, p.RankOf(e), $"expert {e}");
            next += count;
        }
        Assert.AreEqual(experts, next, "every expert is held");
        // the larger ranks come first (E mod N of them)
        for (int r = 0; r < ranks; r++)
            Assert.AreEqual(experts / ranks + (r < experts % ranks ? 1 : 0), p.ExpertCount(r));
    }

    [TestMethod]
    public void Partition_BadArguments_NameTheParameter()
    {
        Assert.AreEqual("ranks", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new ExpertPartition(8, 0)).ParamName);
        Assert.AreEqual("experts", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new ExpertPartition(0, 1)).ParamName);
        var more = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new ExpertPartition(4, 8));
        Assert.AreEqual("ranks", more.ParamName);
        Assert.Contains("at least one", more.Message);
        var p = new ExpertPartition(8, 2);
        Assert.AreEqual("rank", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => p.ExpertCount(2)).ParamName);
        Assert.AreEqual("rank", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => p.FirstExpert(-1)).ParamName);
        Assert.AreEqual("expert", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => p.RankOf(8)).ParamName);
    }
}
