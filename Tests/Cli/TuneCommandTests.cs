using MoeNative.Cli;
using MoeNative.Interop;

namespace MoeNative.Tests.Cli;

/// <summary><c>moenative tune</c>: bad arguments are one line before any GPU work; without a GPU one line saying so;
/// on a GPU it fills the store (second run: every choice stored, nothing timed).</summary>
[TestClass]
public sealed class TuneCommandTests
{
    public TestContext TestContext { get; set; } = null!;

    /// <summary>The table's rows (they hold "T&lt;=" in the shape class column), trimmed.</summary>
    private static string[] ChoiceRows(string output) =>
        output.Split('\n').Where(l => l.Contains("T<=", StringComparison.Ordinal)).Select(l => l.TrimEnd()).ToArray();

    [TestMethod]
    [DataRow(new[] { "tune", "--seqlen", "0" }, "--seqlen", DisplayName = "T = 0")]
    [DataRow(new[] { "tune", "--seqlen", "1,x" }, "x", DisplayName = "not a number")]
    [DataRow(new[] { "tune", "--config", "no-such-preset" }, "no-such-preset", DisplayName = "unknown config")]
    [DataRow(new[] { "tune", "--dtype", "int8" }, "int8", DisplayName = "unknown dtype")]
    public void BadArguments_OneErrorLine_ExitTwo(string[] args, string mentioned)
    {
        CliResult result = CliHarness.Invoke(args);

        Assert.AreEqual(CliApp.ExitUsage, result.ExitCode, result.ToString());
        string[] lines = result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.HasCount(1, lines, result.ToString());
        StringAssert.StartsWith(lines[0], "error: ", result.ToString());
        StringAssert.Contains(lines[0], mentioned, result.ToString());
    }

    [TestMethod]
    public void WithoutGpu_OneLineSayingSo_ExitThree()
    {
        if (Gpu.IsAvailable) Assert.Inconclusive("A GPU is usable here; this test covers machines without one.");

        CliResult result = CliHarness.Invoke("tune", "--config", "tiny", "--seqlen", "4");

        Assert.AreEqual(CliApp.ExitRuntimeError, result.ExitCode, result.ToString());
        StringAssert.StartsWith(result.Error, "error: tune needs a GPU", result.ToString());
        Assert.HasCount(1, result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries), result.ToString());
    }

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    public void OnGpu_FillsTheStore_SecondRunTimesNothing()
    {
        GpuTest.RequireContext();
        DirectoryInfo dir = Directory.CreateTempSubdirectory("moenative-tune-");
        try
        {
            string[] args = ["tune", "--config", "small", "--seqlen", "1,96", "--backward", "--store", dir.FullName];
            CliResult first = CliHarness.Invoke(args);
            TestContext.WriteLine(first.ToString());
            Assert.AreEqual(CliApp.ExitOk, first.ExitCode, first.ToString());
            Assert.HasCount(1, dir.GetFiles("*.json"), "one store file for (card, driver, kernels, bf16, small dims)");
            StringAssert.Contains(first.Output, " tuned now, 0 already stored", first.ToString());
            string[] firstRows = ChoiceRows(first.Output);
            Assert.IsNotEmpty(firstRows, first.ToString());
            Assert.IsTrue(firstRows.All(r => r.EndsWith("tuned", StringComparison.Ordinal)), first.ToString());

            CliResult second = CliHarness.Invoke(args);
            TestContext.WriteLine(second.ToString());
            Assert.AreEqual(CliApp.ExitOk, second.ExitCode, second.ToString());
            StringAssert.Contains(second.Output, $"{firstRows.Length} choices: 0 tuned now, {firstRows.Length} already stored", second.ToString());
            Assert.IsTrue(ChoiceRows(second.Output).All(r => r.EndsWith("stored", StringComparison.Ordinal)), second.ToString());
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
