using MoeNative.Blocks;
using MoeNative.Cli;

namespace MoeNative.Tests.Cli;

/// <summary><c>bench --ep N</c> refuses, in one line, what cannot run here: bad N, and fewer GPUs than ranks (the line
/// names how many are needed and how many there are).</summary>
[TestClass]
public sealed class ExpertParallelBenchTests
{
    [TestMethod]
    [DataRow(new[] { "bench", "--ep", "0" }, "--ep 0", DisplayName = "no ranks")]
    [DataRow(new[] { "bench", "--ep", "16", "--config", "tiny" }, "8 experts", DisplayName = "more ranks than experts")]
    [DataRow(new[] { "bench", "--ep", "2", "--gemm" }, "--gemm", DisplayName = "with --gemm")]
    [DataRow(new[] { "bench", "--ep", "x" }, "x", DisplayName = "not a number")]
    public void BadRanks_OneErrorLine_ExitTwo(string[] args, string mentioned)
    {
        CliResult result = CliHarness.Invoke(args);
        Assert.AreEqual(CliApp.ExitUsage, result.ExitCode, result.ToString());
        ArgumentErrorTests.AssertOneErrorLine(result, mentioned);
    }

    [TestMethod]
    public void MoreRanksThanGpus_OneErrorLineNamingWhatIsNeeded()
    {
        int gpus = ExpertParallelDevices.Count();
        int ranks = Math.Min(gpus + 1, 128);
        CliResult result = CliHarness.Invoke("bench", "--ep", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.AreEqual(CliApp.ExitRuntimeError, result.ExitCode, result.ToString());
        ArgumentErrorTests.AssertOneErrorLine(result, $"needs {ranks} GPUs");
        Assert.Contains($"this machine has {gpus}", result.Error);
    }
}
