using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Decode;

/// <summary>
/// The resident CTAs per SM that size the decode kernels' one-wave column walk come from the loaded function
/// (<see cref="CudaKernel.MaxActiveBlocksPerMultiprocessor"/>, the driver's occupancy of what its JIT allocated): for
/// every decode entry (both dtypes, every pass width, plain and programmatic modules) the driver's answer equals the
/// count worked out here by hand from the entry's register count (CU_FUNC_ATTRIBUTE_NUM_REGS) and the SM's limits of
/// compute capability 8.0 / 9.0 (65536 registers allocated per warp in units of 256, 2048 threads, 32 CTAs). The log
/// lists each entry's registers and residents (what the card's JIT gave, against ptxas 12.4 -v).
/// </summary>
[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class DecodeOccupancyGpuTests
{
    private const int Block = 128; // the decode kernels' block: 4 warps

    [TestMethod]
    public void ResidentCtas_AreTheRegisterLimitOfTheLoadedEntry()
    {
        CudaContext ctx = GpuTest.RequireContext();
        if (ctx.ComputeCapability is not ((8, 0) or (9, 0)))
            Assert.Inconclusive($"the hand-computed limits are those of compute capability 8.0 and 9.0; this GPU is {ctx.ComputeCapability}");
        bool[] modules = ctx.ComputeCapability.Major >= 9 ? [false, true] : [false];
        int checkedEntries = 0;
        foreach (bool programmatic in modules)
            foreach (ScalarType dtype in MoeKernelModules.DecodeDtypes)
                foreach (int rows in MoeKernelModules.DecodeRowsPerPass)
                {
                    PtxModuleSpec module = MoeKernelModules.DecodeExperts(programmatic);
                    Check(PtxModuleCache.GetKernel<DecodeGateUpSiluArgs>(ctx, module, MoeKernelModules.DecodeGateUpSiluEntry(dtype, rows)).Kernel);
                    Check(PtxModuleCache.GetKernel<DecodeDownCombineArgs>(ctx, module, MoeKernelModules.DecodeDownCombineEntry(dtype, rows)).Kernel);
                    checkedEntries += 2;
                }
        Assert.AreEqual(modules.Length * 2 * 4 * 2, checkedEntries);
    }

    [TestMethod]
    public void MaxActiveBlocks_RefusesABadBlock()
    {
        CudaContext ctx = GpuTest.RequireContext();
        CudaKernel kernel = PtxModuleCache.GetKernel<DecodeGateUpSiluArgs>(ctx, MoeKernelModules.DecodeExperts(false),
            MoeKernelModules.DecodeGateUpSiluEntry(ScalarType.BFloat16, 1)).Kernel;
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernel.MaxActiveBlocksPerMultiprocessor(0, 0));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernel.MaxActiveBlocksPerMultiprocessor(1025, 0));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernel.MaxActiveBlocksPerMultiprocessor(Block, -1));
    }

    private static void Check(CudaKernel kernel)
    {
        int registers = kernel.NumRegisters;
        Assert.AreEqual(0, kernel.LocalBytesPerThread, $"{kernel.Name} spills");
        // per warp: registers x 32 rounded up to 256; 4 warps per CTA
        int perWarp = (registers * 32 + 255) / 256 * 256;
        int byRegisters = 65536 / (perWarp * (Block / 32));
        int expected = Math.Min(Math.Min(byRegisters, 2048 / Block), 32);
        int resident = kernel.MaxActiveBlocksPerMultiprocessor(Block, 0);
        Console.WriteLine($"{kernel.Name}: {registers} registers, {resident} resident CTAs per SM");
        Assert.AreEqual(expected, resident, $"{kernel.Name}: {registers} registers");
    }
}
