using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Runtime;

[TestClass]
public sealed class PtxModuleCacheTests
{
    [TestMethod]
    public void CacheKey_IsStableAndChangesWithEveryInput()
    {
        string key = PtxModuleCache.CacheKey("ret;", 9, 0, "13000", "opts");
        Assert.AreEqual(key, PtxModuleCache.CacheKey("ret;", 9, 0, "13000", "opts"));
        Assert.AreEqual(64, key.Length);
        string[] others =
        [
            PtxModuleCache.CacheKey("ret; ", 9, 0, "13000", "opts"),
            PtxModuleCache.CacheKey("ret;", 8, 0, "13000", "opts"),
            PtxModuleCache.CacheKey("ret;", 9, 1, "13000", "opts"),
            PtxModuleCache.CacheKey("ret;", 9, 0, "12080", "opts"),
            PtxModuleCache.CacheKey("ret;", 9, 0, "13000", "other"),
        ];
        foreach (string other in others) Assert.AreNotEqual(key, other);
        Assert.AreEqual(others.Length, others.Distinct().Count());
    }

    [TestMethod]
    public void WriteAtomically_WritesTheTextAndLeavesNoTempFile()
    {
        string dir = Path.Combine(Path.GetTempPath(), "moenative-dump-" + Guid.NewGuid().ToString("N"));
        try
        {
            string path = Path.Combine(dir, "Routing_x.bf16.0123.ptx");
            PtxModuleCache.WriteAtomically(path, "first");
            PtxModuleCache.WriteAtomically(path, "second");
            Assert.AreEqual("second", File.ReadAllText(path));
            Assert.AreEqual(1, Directory.GetFiles(dir).Length);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [TestMethod]
    [DataRow("Routing/router_softmax_topk.bf16", "Routing_router_softmax_topk.bf16")]
    [DataRow("a:b\\c", "a_b_c")]
    public void SafeFileName_KeepsOnlyPortableCharacters(string name, string expected)
    {
        Assert.AreEqual(expected, PtxModuleCache.SafeFileName(name));
    }
}
