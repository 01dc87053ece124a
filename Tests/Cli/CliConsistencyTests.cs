using System.CommandLine;
using System.Text.RegularExpressions;
using MoeNative.Cli;

namespace MoeNative.Tests.Cli;

/// <summary>One CLI vocabulary: dtype names bf16|fp16|fp32 (never the enum names), lists shown as lists, one alias per
/// shared option in every command, errors without .NET's "(Parameter 'x')", tolerances printed one way.</summary>
[TestClass]
public sealed partial class CliConsistencyTests
{
    private static readonly string[][] s_commands = [["info"], ["verify"], ["run"], ["bench"], ["tune"], ["load"], ["synth"], ["ptx", "dump"]];

    /// <summary>The alias scheme: long name -> its one short alias, wherever the option appears.</summary>
    private static readonly Dictionary<string, string> s_aliases = new()
    {
        ["--config"] = "-c", ["--seqlen"] = "-t", ["--output"] = "-o", ["--weights"] = "-w", ["--input"] = "-i",
        ["--grad-output"] = "-g", ["--layer"] = "-l", ["--seed"] = "-s",
    };

    public static IEnumerable<object[]> Commands => s_commands.Select(c => new object[] { c });

    [TestMethod]
    [DynamicData(nameof(Commands))]
    public void Help_NamesDtypesShortly_ShowsListsAsLists(string[] command)
    {
        CliResult result = CliHarness.Invoke([.. command, "--help"]);

        Assert.AreEqual(CliApp.ExitOk, result.ExitCode, result.ToString());
        foreach (string enumName in new[] { "BFloat16", "Float16", "Float32" })
            Assert.DoesNotContain(enumName, result.Output, result.ToString());
        Assert.DoesNotMatchRegex(@"\[default: [^\]]*\|", result.Output, "a list default printed with '|': " + result);
        if (result.Output.Contains("--dtype", StringComparison.Ordinal))
        {
            StringAssert.Contains(result.Output, "--dtype <bf16|fp16|fp32>", result.ToString());
            if (command[0] is "verify" or "bench" or "tune")
                StringAssert.Contains(result.Output, "[default: bf16]", result.ToString());
        }
    }

    [TestMethod]
    [DataRow("bench", "--seqlen <T[,T...]>", "[default: 1,128,1024,4096,16384]", DisplayName = "bench --seqlen: a list, default as typed")]
    [DataRow("tune", "--seqlen <T[,T...]>", "[default: 1,128,1024,4096,16384]", DisplayName = "tune --seqlen: a list")]
    [DataRow("verify", "--impl <hf,grouped,fused>", "", DisplayName = "verify --impl: a list")]
    [DataRow("verify", "--seqlen <T>", "", DisplayName = "verify --seqlen: one value")]
    [DataRow("run", "--impl <hf|grouped|fused>", "[default: hf]", DisplayName = "run --impl: one of")]
    public void Help_ShowsWhatIsTyped(string command, string option, string defaultText)
    {
        CliResult result = CliHarness.Invoke(command, "--help");

        string line = result.Output.Split('\n').FirstOrDefault(l => l.Contains(option, StringComparison.Ordinal))
            ?? throw new AssertFailedException($"no help line with '{option}':\n{result}");
        if (defaultText.Length > 0) StringAssert.Contains(line, defaultText, result.ToString());
    }

    [TestMethod]
    public void EveryCommand_UsesTheOneAliasScheme()
    {
        RootCommand root = CliApp.BuildRoot(CliConsole.ForWriters(TextWriter.Null, TextWriter.Null));
        var seen = new List<string>();
        foreach (Command command in AllCommands(root))
        {
            foreach (Option option in command.Options.Where(o => o.Name.StartsWith("--", StringComparison.Ordinal) && o.Name != "--help"))
            {
                string[] shortAliases = option.Aliases.Where(a => !a.StartsWith("--", StringComparison.Ordinal)).ToArray();
                if (s_aliases.TryGetValue(option.Name, out string? expected))
                    CollectionAssert.AreEqual(new[] { expected }, shortAliases, $"{command.Name} {option.Name}");
                else
                    Assert.IsEmpty(shortAliases, $"{command.Name} {option.Name} has a short alias outside the scheme: {string.Join(", ", shortAliases)}");
                Assert.IsFalse(option.Aliases.Any(a => a.StartsWith("--", StringComparison.Ordinal)),
                    $"{command.Name} {option.Name}: a second long name ({string.Join(", ", option.Aliases)})");
                seen.Add(option.Name);
            }
        }
        foreach (string name in new[] { "--config", "--seqlen", "--output", "--seed" })
            CollectionAssert.Contains(seen, name, "the scheme's option is used somewhere");
    }

    [TestMethod]
    [DataRow("0", DisplayName = "T = 0")]
    [DataRow("-3", DisplayName = "T < 0")]
    public void Verify_RefusesNonPositiveSeqLen(string tokens)
    {
        CliResult result = CliHarness.Invoke("verify", "--config", "tiny", "--device", "cpu", "--seqlen", tokens);

        Assert.AreEqual(CliApp.ExitUsage, result.ExitCode, result.ToString());
        Assert.DoesNotContain("PASS", result.Output, result.ToString());
        StringAssert.Contains(result.Error, "--seqlen", result.ToString());
        StringAssert.Contains(result.Error, "positive", result.ToString());
    }

    [TestMethod]
    [DataRow("verify", "--config", "no-such-preset", "--device", "cpu", DisplayName = "verify: unknown config")]
    [DataRow("run", "--config", "no-such-preset", "-w", "/", "-i", "/etc/hostname", "-o", "/tmp/x.safetensors", "--device", "cpu", "--dtype", "bf16", DisplayName = "run: unknown config")]
    public void Errors_HaveNoDotNetParameterSuffix(params string[] args)
    {
        CliResult result = CliHarness.Invoke(args);

        Assert.AreEqual(CliApp.ExitUsage, result.ExitCode, result.ToString());
        StringAssert.StartsWith(result.Error, "error: ", result.ToString());
        Assert.DoesNotContain("(Parameter", result.Error, result.ToString());
        StringAssert.Contains(result.Error, "no-such-preset", result.ToString());
    }

    [TestMethod]
    public void WithoutParameterSuffix_KeepsTheMessage_DropsOnlyTheSuffix()
    {
        var plain = new ArgumentException("x must be positive, got -1.", "x");
        var ranged = new ArgumentOutOfRangeException("count", 7, "count must be < 4.");

        Assert.AreEqual("x must be positive, got -1.", CliApp.WithoutParameterSuffix(plain));
        Assert.AreEqual("count must be < 4.\nActual value was 7.", CliApp.WithoutParameterSuffix(ranged).ReplaceLineEndings("\n"));
        Assert.AreEqual("no parameter", CliApp.WithoutParameterSuffix(new ArgumentException("no parameter")));
    }

    [TestMethod]
    [DataRow("fp32", "1e-5")]
    [DataRow("fp16", "1e-3")]
    [DataRow("bf16", "1e-2")]
    public void Verify_PrintsEveryToleranceOneWay(string dtype, string tol)
    {
        CliResult result = CliHarness.Invoke("verify", "--config", "tiny", "--seqlen", "4", "--dtype", dtype, "--device", "cpu", "--forward-only");

        Assert.AreEqual(CliApp.ExitOk, result.ExitCode, result.ToString());
        StringAssert.Contains(result.Output, $"atol = rtol = {tol}", result.ToString());
        StringAssert.Contains(result.Output, $"tol = {tol}", result.ToString());
        foreach (Match m in NumberWithExponent().Matches(result.Output).Where(m => m.Value.Length < 9))
        {
            // tolerances are 1e-2 / 1.41e-2 (no capital E, no padded exponent); table values are 1.23e-04 (their own column format)
            Assert.DoesNotMatchRegex(@"E", m.Value, $"'{m.Value}' in\n{result}");
        }
        Assert.DoesNotMatchRegex(@"\b1E-0?\d\b", result.Output, result.ToString());
    }

    [TestMethod]
    public void Tolerance_Format()
    {
        Assert.AreEqual("1e-2", CliOptions.Tolerance(1e-2));
        Assert.AreEqual("1e-5", CliOptions.Tolerance(1e-5));
        Assert.AreEqual("1.41e-2", CliOptions.Tolerance(0.0141421356));
    }

    private static IEnumerable<Command> AllCommands(Command command)
    {
        yield return command;
        foreach (Command sub in command.Subcommands)
            foreach (Command c in AllCommands(sub))
                yield return c;
    }

    [GeneratedRegex(@"\d(\.\d+)?[eE][+-]?\d+")]
    private static partial Regex NumberWithExponent();
}
