using MoeNative.Cli;
using MoeNative.Cli.Commands;
using MoeNative.Ptx;

namespace MoeNative.Tests.Cli;

[TestClass]
public sealed class PtxDumpCommandTests
{
    [TestMethod]
    public void PtxDump_WritesEveryCatalogModule_Verbatim()
    {
        DirectoryInfo dir = CliHarness.NewTempDirectory("ptx-dump");
        try
        {
            CliResult result = CliHarness.Invoke("ptx", "dump", "--output", dir.FullName);

            Assert.AreEqual(CliApp.ExitOk, result.ExitCode, result.ToString());
            IReadOnlyList<PtxModuleSpec> modules = PtxCatalog.All();
            Assert.HasCount(modules.Count, dir.GetFiles("*.ptx"), result.ToString());
            foreach (PtxModuleSpec module in modules)
            {
                string path = Path.Combine(dir.FullName, PtxCommand.FileName(module.ModuleName));
                Assert.IsTrue(File.Exists(path), $"{module.ModuleName}: {path} missing\n{result}");
                Assert.AreEqual(module.Ptx, File.ReadAllText(path), $"{module.ModuleName}: text differs");
            }
            Assert.IsEmpty(dir.GetFiles("*.tmp"), "temporary files left behind");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [TestMethod]
    public void PtxDump_FilterMatchingNothing_OneErrorLine()
    {
        DirectoryInfo dir = CliHarness.NewTempDirectory("ptx-dump-none");
        try
        {
            CliResult result = CliHarness.Invoke("ptx", "dump", "--output", dir.FullName, "--filter", "no-such-module-xyz");

            Assert.AreEqual(CliApp.ExitUsage, result.ExitCode, result.ToString());
            ArgumentErrorTests.AssertOneErrorLine(result, "no-such-module-xyz");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [TestMethod]
    [DataRow("Routing/router_softmax_topk.bf16", "Routing_router_softmax_topk.bf16.ptx")]
    [DataRow("gemm nt:64x128", "gemm_nt_64x128.ptx")]
    [DataRow("already.ptx", "already.ptx")]
    public void FileName_KeepsSafeCharactersOnly(string moduleName, string expected) =>
        Assert.AreEqual(expected, PtxCommand.FileName(moduleName));
}
