using MoeNative.Cli;
using MoeNative.Cli.Commands;
using MoeNative.Cli.Verification;
using MoeNative.Interop;

namespace MoeNative.Tests.Cli;

[TestClass]
public sealed class VerifyCommandTests
{
    public TestContext TestContext { get; set; } = null!;

    private static readonly string[] CheckedTensors =
        ["router_logits", "output", "grad_hidden_states", "grad_gate", "grad_gate_proj", "grad_up_proj", "grad_down_proj"];

    [TestMethod]
    [DataRow("bf16")]
    [DataRow("fp32")]
    public void Verify_TinyOnCpu_PrintsTableAndPasses(string dtype)
    {
        CliResult result = CliHarness.Invoke("verify", "--config", "tiny", "--seqlen", "8", "--dtype", dtype, "--device", "cpu");

        Assert.AreEqual(CliApp.ExitOk, result.ExitCode, result.ToString());
        Assert.Contains("grouped (host) vs hf (host)", result.Output, result.ToString());
        foreach (string tensor in CheckedTensors)
        {
            Assert.MatchesRegex($@"{tensor}\s+\[", result.Output, $"row for {tensor}\n{result}");
        }
        Assert.Contains("max abs", result.Output);
        Assert.Contains("rel norm", result.Output);
        Assert.Contains("PASS: all 7 checks within tolerance", result.Output, result.ToString());
        Assert.DoesNotContain("FAIL", result.Output, result.ToString());
    }

    [TestMethod]
    public void Verify_WithoutGpu_SaysItRunsTheCpuPath()
    {
        if (Gpu.IsAvailable)
        {
            Assert.Inconclusive("A GPU is usable here; this test covers machines without one.");
        }

        CliResult result = CliHarness.Invoke("verify", "--config", "tiny", "--seqlen", "3", "--forward-only");

        Assert.AreEqual(CliApp.ExitOk, result.ExitCode, result.ToString());
        Assert.StartsWith("no GPU: running the CPU path because ", result.Output, result.ToString());
        Assert.Contains(", cpu,", result.Output, result.ToString());
        Assert.Contains("PASS: all 2 checks", result.Output, result.ToString());
    }

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    public void Verify_SmallOnGpu_ChecksFusedAgainstBothReferences()
    {
        GpuTest.RequireContext();

        CliResult result = CliHarness.Invoke("verify", "--config", "small", "--seqlen", "64", "--device", "gpu");
        TestContext.WriteLine(result.ToString());

        // 0 = every check passed, 1 = a check failed (the table says which; the Blocks tests judge the numbers);
        // anything else means the command itself broke.
        Assert.IsTrue(result.ExitCode is CliApp.ExitOk or CliApp.ExitCheckFailed, result.ToString());
        Assert.DoesNotContain("(run)", result.Output, "the fused block failed to run\n" + result);
        Assert.Contains("grouped (cuBLAS) vs hf (cuBLAS)", result.Output, result.ToString());
        Assert.Contains("fused (PTX) vs grouped (cuBLAS)", result.Output, result.ToString());
        Assert.Contains("fused (PTX) vs hf (cuBLAS)", result.Output, result.ToString());
        Assert.MatchesRegex(@"first_gemm\s+\[", result.Output, result.ToString());
    }

    /// <summary>A failing check shows FAIL, names the tensor and gives exit code 1.</summary>
    [TestMethod]
    [DataRow(new[] { 1f, 2f, 3f }, new[] { 1f, 2f, 3.5f }, DisplayName = "one element far off")]
    [DataRow(new[] { 1f, float.NaN, 3f }, new[] { 1f, 2f, 3f }, DisplayName = "NaN")]
    [DataRow(new[] { 1.05f, 2.1f, 3.15f }, new[] { 1f, 2f, 3f }, DisplayName = "5% off")]
    public void Report_FailingCheck_ExitOne(float[] actual, float[] expected)
    {
        var check = TensorCheck.Compare("x vs y", "t", "[3]", actual, expected, 1e-2);
        Assert.IsFalse(check.Passed, check.ToString());
        using var output = new StringWriter();

        int exit = VerifyCommand.Report(CliConsole.ForWriters(output, output), [check], 1e-2);

        Assert.AreEqual(CliApp.ExitCheckFailed, exit, output.ToString());
        Assert.Contains("FAIL: 1 of 1 checks out of tolerance: x vs y t", output.ToString());
    }

    /// <summary>Forward tensors and gradients share the library's scaled rule (tol = 1e-2 here).</summary>
    [TestMethod]
    [DataRow(new[] { 1.004f, 2f, 3f }, new[] { 1f, 2f, 3f }, true, DisplayName = "within atol + rtol|e|")]
    [DataRow(new[] { 10f, 20f, 30f, 0.35f }, new[] { 10f, 20f, 30f, 0.1f }, true, DisplayName = "small element off within the magnitude-scaled atol")]
    [DataRow(new[] { 10f, 20f, 30f, 0.5f }, new[] { 10f, 20f, 30f, 0.1f }, false, DisplayName = "small element off beyond the magnitude-scaled atol")]
    [DataRow(new[] { 10.15f, 10.15f, 10.15f, 10.15f }, new[] { 10f, 10f, 10f, 10f }, false, DisplayName = "every element within, relative norm above tol")]
    [DataRow(new[] { 0.005f, -0.005f, 0f }, new[] { 0f, 0f, 0f }, true, DisplayName = "all-zero reference, small absolute error")]
    [DataRow(new[] { 0.05f, 0f, 0f }, new[] { 0f, 0f, 0f }, false, DisplayName = "all-zero reference, large absolute error")]
    public void TensorCheck_PassRules(float[] actual, float[] expected, bool passes)
    {
        var check = TensorCheck.Compare("a vs b", "t", "", actual, expected, 1e-2);

        Assert.AreEqual(passes, check.Passed, check.ToString());
    }

    [TestMethod]
    public void TensorCheck_LengthMismatch_FailsWithNote()
    {
        var check = TensorCheck.Compare("a vs b", "t", "", [1f, 2f], [1f, 2f, 3f], 1e-2);

        Assert.IsFalse(check.Passed);
        Assert.AreEqual("2 elements, the reference has 3", check.Note);
    }

    [TestMethod]
    public void TensorCheck_Metrics_MatchHandComputation()
    {
        // diff = (0, 0.3, -0.4, 0): max abs 0.4, ‖diff‖ = 0.5, ‖ref‖ = √(1 + 4 + 16 + 4) = 5 ≥ √4 -> 0.1;
        // atol = 1e-2·max(1, 4) = 0.04: 0.3 > 0.04 + 0.02 and 0.4 > 0.04 + 0.04 -> 2 mismatches.
        var check = TensorCheck.Compare("a vs b", "t", "", [1f, 2.3f, 3.6f, 2f], [1f, 2f, 4f, 2f], 1e-2);

        Assert.IsNotNull(check.Result);
        Assert.AreEqual(0.4, check.Result.MaxAbsError, 1e-6);
        Assert.AreEqual(0.5 / 5.0, check.Result.RelativeNormError, 1e-6);
        Assert.AreEqual(2, check.Result.Mismatches);
        Assert.AreEqual(4, check.Result.Count);
    }
}
