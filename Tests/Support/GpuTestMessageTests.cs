namespace MoeNative.Tests;

/// <summary>Without a GPU the reason is given in full once per run, then as one short line per test.</summary>
[TestClass]
public sealed class GpuTestMessageTests
{
    private const string Reason =
        "Could not load the CUDA driver library (libcuda; an NVIDIA driver must be installed). Tried, in order:\n" +
        "  'libcuda.so.1' (default name): cannot open shared object file\n" +
        "Set MOENATIVE_CUDA_DRIVER to the full path of the library to load it from elsewhere.";

    [TestMethod]
    public void FirstTime_FullReason_Afterwards_OneShortLine()
    {
        string first = GpuTest.InconclusiveMessage(Reason, firstTime: true);
        string later = GpuTest.InconclusiveMessage(Reason, firstTime: false);

        Assert.AreEqual("No usable GPU: " + Reason, first);
        Assert.DoesNotContain("\n", later);
        Assert.StartsWith("No usable GPU: Could not load the CUDA driver library (libcuda; an NVIDIA driver must be installed) (full reason:", later);
        Assert.IsLessThan(160, later.Length, later);
    }

    [TestMethod]
    public void WithoutGpu_TheSharedContextEndsInconclusive_WithOneLine()
    {
        if (MoeNative.Interop.Gpu.IsAvailable) Assert.Inconclusive("A GPU is usable here; this test covers machines without one.");

        // Two calls: at most one of all the run's calls carries the full reason, so the second is short.
        _ = Assert.Throws<AssertInconclusiveException>(() => GpuTest.RequireContext());
        AssertInconclusiveException second = Assert.Throws<AssertInconclusiveException>(() => GpuTest.RequireContext());

        Assert.Contains("No usable GPU: ", second.Message);
        Assert.DoesNotContain("\n", second.Message.Trim());
    }
}
