using System.Runtime.InteropServices;
using MoeNative.Cli;
using MoeNative.Interop;

namespace MoeNative.Tests.Cli;

[TestClass]
public sealed class InfoCommandTests
{
    [TestMethod]
    public void Info_PrintsRuntime_ExitsZero()
    {
        CliResult result = CliHarness.Invoke("info");

        Assert.AreEqual(CliApp.ExitOk, result.ExitCode, result.ToString());
        Assert.Contains(RuntimeInformation.FrameworkDescription, result.Output, result.ToString());
        Assert.AreEqual("", result.Error, result.ToString());
    }

    [TestMethod]
    public void Info_WithoutGpu_SaysWhyNoneIsUsable()
    {
        if (Gpu.IsAvailable)
        {
            Assert.Inconclusive("A GPU is usable here; this test covers machines without one.");
        }

        CliResult result = CliHarness.Invoke("info");

        Assert.AreEqual(CliApp.ExitOk, result.ExitCode, result.ToString());
        Assert.Contains("GPU          none usable: ", result.Output, result.ToString());
        string firstLineOfReason = Gpu.UnavailableReason!.Split('\n')[0].TrimEnd();
        Assert.Contains(firstLineOfReason, result.Output, result.ToString());
    }

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    public void Info_WithGpu_ShowsDeviceAndCublasVersion()
    {
        CudaContext context = GpuTest.RequireContext();

        CliResult result = CliHarness.Invoke("info");

        Assert.AreEqual(CliApp.ExitOk, result.ExitCode, result.ToString());
        Assert.Contains(context.Name, result.Output, result.ToString());
        Assert.Contains($"{context.MultiprocessorCount}", result.Output, result.ToString());
        Assert.DoesNotContain("cuBLAS       unavailable", result.Output, result.ToString());
        Assert.MatchesRegex(@"cuBLAS\s+\d+\.\d+\.\d+", result.Output, result.ToString());
    }
}
