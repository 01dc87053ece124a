using MoeNative.Blocks;

namespace MoeNative.Tests.Blocks;

/// <summary>How autotune times a candidate (GemmTuner.TimeCandidate): a launch under 0.1 ms is timed in batches of 4
/// back-to-back launches between chained events, so the host's launch cost runs under the GPU's work instead of being
/// counted; a longer launch is timed alone (its host cost is a few microseconds against a tenth of a millisecond).</summary>
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
}
