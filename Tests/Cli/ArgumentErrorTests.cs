using MoeNative.Cli;
using MoeNative.Interop;
using MoeNative.Reference;
using MoeNative.Reference.IO;

namespace MoeNative.Tests.Cli;

/// <summary>Bad command lines and bad input files end with one line <c>error: ...</c> naming the culprit, no stack
/// trace, and a non-zero exit code (2 for what the user can fix).</summary>
[TestClass]
public sealed class ArgumentErrorTests
{
    [TestMethod]
    [DataRow(new[] { "nosuchcommand" }, "nosuchcommand", DisplayName = "unknown command")]
    [DataRow(new[] { "info", "--bogus" }, "--bogus", DisplayName = "unknown option")]
    [DataRow(new[] { "info", "--ordinal", "x" }, "x", DisplayName = "non-integer ordinal")]
    [DataRow(new[] { "verify", "--dtype", "bf17" }, "bf17", DisplayName = "verify: unknown dtype")]
    [DataRow(new[] { "verify", "--device", "tpu" }, "tpu", DisplayName = "verify: unknown device")]
    [DataRow(new[] { "verify", "--impl", "cuda" }, "cuda", DisplayName = "verify: unknown implementation")]
    [DataRow(new[] { "verify", "--config", "no-such-preset", "--device", "cpu" }, "no-such-preset", DisplayName = "verify: unknown config")]
    [DataRow(new[] { "verify", "--config", "tiny", "--impl", "fused", "--device", "cpu" }, "fused", DisplayName = "verify: fused on cpu")]
    [DataRow(new[] { "bench", "--seqlen", "1,x" }, "x", DisplayName = "bench: bad token list")]
    [DataRow(new[] { "bench", "--dtype", "int8" }, "int8", DisplayName = "bench: unknown dtype")]
    [DataRow(new[] { "bench", "--inference", "--backward" }, "--inference", DisplayName = "bench: --inference with --backward")]
    [DataRow(new[] { "bench", "--decode", "sometimes" }, "sometimes", DisplayName = "bench: unknown decode mode")]
    [DataRow(new[] { "run", "--weights", "w", "--input", "i", "--output", "o" }, "--config", DisplayName = "run: missing --config")]
    [DataRow(new[] { "ptx", "dump" }, "--output", DisplayName = "ptx dump: missing --output")]
    public void BadCommandLine_OneErrorLine_ExitTwo(string[] args, string mentioned)
    {
        CliResult result = CliHarness.Invoke(args);

        Assert.AreEqual(CliApp.ExitUsage, result.ExitCode, result.ToString());
        AssertOneErrorLine(result, mentioned);
    }

    /// <summary>The run command's file errors: which file, which tensor, which shape.</summary>
    [TestMethod]
    [DataRow("missing-weights", "missing.safetensors", DisplayName = "weights file missing")]
    [DataRow("missing-input", "nope-input.safetensors", DisplayName = "input file missing")]
    [DataRow("input-name", "hidden_states", DisplayName = "input lacks hidden_states")]
    [DataRow("input-shape", "hidden_states", DisplayName = "input has the wrong hidden size")]
    [DataRow("weights-shape", "experts.down_proj", DisplayName = "a weight has the wrong shape")]
    [DataRow("bad-dtype", "bf17", DisplayName = "unknown --dtype")]
    [DataRow("bad-impl", "cuda", DisplayName = "unknown --impl")]
    [DataRow("fused-cpu", "--impl fused", DisplayName = "--impl fused with --device cpu")]
    [DataRow("not-safetensors", "input.safetensors", DisplayName = "input is not a safetensors file")]
    public void Run_BadInput_OneErrorLine_ExitTwo(string scenario, string mentioned)
    {
        using var files = new TempFolder("run-errors");
        MoeConfig c = MoeConfig.Preset("tiny");
        MoeWeights weights = MoeWeights.Random(c, 3);
        CliTestData.WriteWeights(files.Path("w.safetensors"), weights, SafetensorsDType.F32, perExpert: false, layer: null);
        CliTestData.WriteTensor(files.Path("input.safetensors"), "hidden_states", [4, c.HiddenSize], new float[4 * c.HiddenSize]);
        string weightsPath = files.Path("w.safetensors"), input = files.Path("input.safetensors");
        var extra = new List<string> { "--device", "cpu" };
        switch (scenario)
        {
            case "missing-weights": weightsPath = files.Path("missing.safetensors"); break;
            case "missing-input": input = files.Path("nope-input.safetensors"); break;
            case "input-name": CliTestData.WriteTensor(input, "hidden", [4, c.HiddenSize], new float[4 * c.HiddenSize]); break;
            case "input-shape": CliTestData.WriteTensor(input, "hidden_states", [4, 16], new float[64]); break;
            case "weights-shape":
                SafetensorsWriter.Write(weightsPath, [
                    SafetensorsEntry.FromFloats("gate.weight", [c.NumExperts, c.HiddenSize], weights.Gate),
                    SafetensorsEntry.FromFloats("experts.gate_up_proj", [c.NumExperts, 2 * c.IntermediateSize, c.HiddenSize], weights.GateUpProj),
                    SafetensorsEntry.FromFloats("experts.down_proj", [c.NumExperts, c.IntermediateSize, c.HiddenSize], weights.DownProj),
                ]);
                break;
            case "bad-dtype": extra.AddRange(["--dtype", "bf17"]); break;
            case "bad-impl": extra.AddRange(["--impl", "cuda"]); break;
            case "fused-cpu": extra.AddRange(["--impl", "fused"]); break;
            case "not-safetensors": File.WriteAllText(input, "this is not a safetensors file"); break;
            default: Assert.Fail("unknown scenario " + scenario); break;
        }

        CliResult result = CliHarness.Invoke(["run", "--config", "tiny", "--weights", weightsPath, "--input", input,
            "--output", files.Path("out.safetensors"), .. extra]);

        Assert.AreEqual(CliApp.ExitUsage, result.ExitCode, result.ToString());
        AssertOneErrorLine(result, mentioned);
        Assert.IsFalse(File.Exists(files.Path("out.safetensors")), "no output file after an error");
    }

    [TestMethod]
    public void Bench_WithoutGpu_OneErrorLine_RuntimeExitCode()
    {
        if (Gpu.IsAvailable)
        {
            Assert.Inconclusive("A GPU is usable here; this test covers machines without one.");
        }

        CliResult result = CliHarness.Invoke("bench", "--config", "tiny", "--seqlen", "4");

        Assert.AreEqual(CliApp.ExitRuntimeError, result.ExitCode, result.ToString());
        AssertOneErrorLine(result, "bench needs a GPU and none is usable");
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
