using MoeNative.Cli;

namespace MoeNative.Tests.Cli;

/// <summary>Bad command lines end with one line <c>error: ...</c> naming the culprit and exit code 2.</summary>
[TestClass]
public sealed class ArgumentErrorTests
{
    [TestMethod]
    [DataRow(new[] { "nosuchcommand" }, "nosuchcommand", DisplayName = "unknown command")]
    [DataRow(new[] { "info", "--bogus" }, "--bogus", DisplayName = "unknown option")]
    [DataRow(new[] { "info", "--ordinal", "x" }, "x", DisplayName = "non-integer ordinal")]
    public void BadCommandLine_OneErrorLine_ExitTwo(string[] args, string mentioned)
    {
        CliResult result = CliHarness.Invoke(args);

        Assert.AreEqual(CliApp.ExitUsage, result.ExitCode, result.ToString());
        AssertOneErrorLine(result, mentioned);
    }

    internal static void AssertOneErrorLine(CliResult result, string mentioned)
    {
        string error = result.Error.TrimEnd('\r', '\n');
        Assert.StartsWith("error: ", error, result.ToString());
        Assert.DoesNotContain("\n", error, result.ToString());
        Assert.DoesNotContain("   at ", error, result.ToString());
        Assert.Contains(mentioned, error, result.ToString());
    }
}
