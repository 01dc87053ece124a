namespace MoeNative.Tests;

/// <summary>Once per test run: says why the GPU tests will end Inconclusive when there is no GPU.</summary>
[TestClass]
public static class TestRun
{
    [AssemblyInitialize]
    public static void Start(TestContext context)
    {
        _ = context;
        GpuTest.ReportOnceAtStart();
    }
}
