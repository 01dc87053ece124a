using MoeNative.Blocks;

namespace MoeNative.Tests.Blocks;

/// <summary>How autotune times a candidate (GemmTuner.TuneWith): a launch under 0.1 ms is timed in batches of 4
/// back-to-back launches between chained events, so the host's launch cost runs under the GPU's work instead of being
/// counted; a longer launch is timed alone (its host cost is a few microseconds against a tenth of a millisecond); the
/// candidates are timed in rounds, the order rotated per round (GemmTuner.CandidateAt).</summary>
[TestClass]
public sealed class GemmTunerTimingTests
{
    [TestMethod]
    [DataRow(0.004, 4, DisplayName = "a 4 us router GEMM: a batch of 4")]
    [DataRow(0.0999, 4, DisplayName = "just under 0.1 ms: a batch of 4")]
    [DataRow(0.1, 1, DisplayName = "0.1 ms: alone")]
    [DataRow(2.5, 1, DisplayName = "a 2.5 ms expert GEMM: alone")]
    public void LaunchesPerRepetition_BatchesShortLaunches(double launchMs, int expected)
    {
        Assert.AreEqual(expected, GemmTuner.LaunchesPerRepetition(launchMs));
        Assert.AreEqual(4, GemmTuner.ShortLaunchBatch);
        Assert.AreEqual(0.1, GemmTuner.LongLaunchMs);
    }

    /// <summary>The timed rounds: each round times every warm candidate once; over as many rounds as candidates each
    /// candidate runs at every position once (first of a round once, last of a round once); PositionOf finds where.</summary>
    [TestMethod]
    [DataRow(1)]
    [DataRow(3)]
    [DataRow(9)]
    public void CandidateAt_RotatesEveryCandidateThroughEveryPosition(int count)
    {
        var positionsSeen = new HashSet<int>[count];
        for (int c = 0; c < count; c++) positionsSeen[c] = [];
        for (int round = 0; round < count; round++)
        {
            int[] order = Enumerable.Range(0, count).Select(p => GemmTuner.CandidateAt(p, round, count)).ToArray();
            CollectionAssert.AreEquivalent(Enumerable.Range(0, count).ToArray(), order, $"round {round} times every candidate once");
            for (int p = 0; p < count; p++)
            {
                Assert.AreEqual(p, GemmTuner.PositionOf(order[p], round, count), $"round {round}: PositionOf inverts CandidateAt");
                positionsSeen[order[p]].Add(p);
            }
        }
        for (int c = 0; c < count; c++)
            Assert.AreEqual(count, positionsSeen[c].Count, $"candidate {c} runs at every position once over {count} rounds");
    }
}
