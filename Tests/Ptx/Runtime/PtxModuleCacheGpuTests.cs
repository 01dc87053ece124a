using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Runtime;

[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class PtxModuleCacheGpuTests
{
    private const string Tiny = """
        //
        // test module
        //
        .version 7.8
        .target sm_80
        .address_size 64
        .visible .entry cache_probe_i32(.param .u64 out_ptr) { ret; }
        """;

    [TestMethod]
    public void GetOrLoad_ReturnsTheSameModuleForTheSameText_AndANewOneForOtherText()
    {
        CudaContext ctx = GpuTest.RequireContext();
        string text = Tiny + "\n// " + Guid.NewGuid().ToString("N");
        CudaModule first = PtxModuleCache.GetOrLoad(ctx, "test/cache_probe", text);
        CudaModule again = PtxModuleCache.GetOrLoad(ctx, "test/cache_probe", text);
        CudaModule other = PtxModuleCache.GetOrLoad(ctx, "test/cache_probe", text + "\n// other");
        Assert.AreSame(first, again);
        Assert.AreNotSame(first, other);
    }

    [TestMethod]
    public void GetOrLoad_BadPtx_ThrowsWithModuleName_AndIsNotCached()
    {
        CudaContext ctx = GpuTest.RequireContext();
        string bad = Tiny.Replace("ret;", "this_is_not_ptx;", StringComparison.Ordinal) + "\n// " + Guid.NewGuid().ToString("N");
        var ex = Assert.ThrowsExactly<CudaJitException>(() => PtxModuleCache.GetOrLoad(ctx, "test/bad_module", bad));
        StringAssert.Contains(ex.ModuleName, "test/bad_module");
        Assert.ThrowsExactly<CudaJitException>(() => PtxModuleCache.GetOrLoad(ctx, "test/bad_module", bad));
    }

    [TestMethod]
    public void EverySmallKernelModule_JitsOnThisCard()
    {
        CudaContext ctx = GpuTest.RequireContext();
        foreach (PtxModuleSpec module in MoeKernelModules.All())
        {
            CudaModule loaded = PtxModuleCache.GetOrLoad(ctx, module.ModuleName, module.Ptx);
            foreach (PtxKernelSpec kernel in module.Kernels)
                Assert.AreEqual(0, loaded.GetKernel(kernel.EntryName).LocalBytesPerThread, $"{kernel.EntryName} uses local memory");
        }
    }
}
