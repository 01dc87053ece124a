using MoeNative.Cli;
using MoeNative.Reference;
using MoeNative.Reference.IO;
using MoeNative.Interop;

namespace MoeNative.Tests.Cli;

/// <summary><c>synth</c> writes a checkpoint the rest of the CLI reads; <c>load</c> puts it on the GPU and runs every layer.</summary>
[TestClass]
public sealed class SynthLoadCommandTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void Synth_WritesAShardedCheckpoint_ThatRunReads()
    {
        using var files = new TempFolder("synth-cli");
        CliResult synth = CliHarness.Invoke("synth", "--config", "tiny", "--layers", "3", "--output", files.Path("ckpt"), "--layout", "fused", "-s", "9");
        TestContext.WriteLine(synth.ToString());
        Assert.AreEqual(CliApp.ExitOk, synth.ExitCode, synth.ToString());
        string[] names = Directory.GetFiles(files.Path("ckpt")).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;
        CollectionAssert.AreEqual(new[] { "config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors", "model.safetensors.index.json" }, names);

        MoeConfig c = MoeConfig.Preset("tiny");
        float[] x = TensorRandom.Normal(4L * c.HiddenSize, 3, 1f, ScalarType.BFloat16);
        CliTestData.WriteTensor(files.Path("x.safetensors"), "hidden_states", [4, c.HiddenSize], x);
        CliResult run = CliHarness.Invoke("run", "--config", files.Path("ckpt"), "--weights", files.Path("ckpt"), "--layer", "2",
            "--input", files.Path("x.safetensors"), "--output", files.Path("y.safetensors"), "--impl", "grouped", "--device", "cpu");
        Assert.AreEqual(CliApp.ExitOk, run.ExitCode, run.ToString());
        var written = CliTestData.ReadAll(files.Path("y.safetensors"), out _);
        MoeWeights w = MoeCheckpoint.LoadWeights(c, files.Path("ckpt"), 2, ScalarType.BFloat16);
        CollectionAssert.AreEqual(new GroupedMoeReference(w, ScalarType.BFloat16).Forward(x).Output, written["output"].Values);
    }

    [TestMethod]
    [DataRow("--layers", "0", "--layers must be at least 1")]
    [DataRow("--layout", "banded", "banded")]
    public void Synth_BadOptions_OneLineUsageError(string option, string value, string expected)
    {
        using var files = new TempFolder("synth-bad");
        CliResult r = CliHarness.Invoke("synth", "--config", "tiny", "--output", files.Path("x"), option, value);
        Assert.AreEqual(CliApp.ExitUsage, r.ExitCode, r.ToString());
        StringAssert.Contains(r.Error, expected);
        Assert.IsFalse(Directory.Exists(files.Path("x")), "nothing written");
    }

    [TestMethod]
    public void Load_WithoutGpu_SaysWhy()
    {
        if (MoeNative.Interop.Gpu.TryGetDevice(0, out _, out _)) Assert.Inconclusive("A GPU is usable here: the no-GPU error cannot happen.");
        using var files = new TempFolder("load-nogpu");
        Assert.AreEqual(CliApp.ExitOk, CliHarness.Invoke("synth", "--config", "tiny", "--output", files.Path("ckpt")).ExitCode);
        CliResult r = CliHarness.Invoke("load", "--config", files.Path("ckpt"), "--weights", files.Path("ckpt"));
        Assert.AreEqual(CliApp.ExitRuntimeError, r.ExitCode, r.ToString());
        StringAssert.Contains(r.Error, "load needs a GPU");
    }

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    public void Load_OnGpu_LoadsAndRunsEveryLayer()
    {
        GpuTest.RequireContext();
        using var files = new TempFolder("load-cli");
        Assert.AreEqual(CliApp.ExitOk, CliHarness.Invoke("synth", "--config", "small", "--layers", "3", "--output", files.Path("ckpt")).ExitCode);
        CliResult r = CliHarness.Invoke("load", "--config", files.Path("ckpt"), "--weights", files.Path("ckpt"), "--seqlen", "16", "--backward",
            "--chunk-mib", "1");
        TestContext.WriteLine(r.ToString());
        Assert.AreEqual(CliApp.ExitOk, r.ExitCode, r.ToString());
        StringAssert.Contains(r.Output, "loaded 3 layers (0,1,2)");
        StringAssert.Contains(r.Output, "GB/s");
        StringAssert.Contains(r.Output, "host memory: anonymous RSS");
        Assert.AreEqual(3, r.Output.Split('\n').Count(l => l.Contains(" yes ", StringComparison.Ordinal)), "every layer ran with finite outputs");
    }
}
