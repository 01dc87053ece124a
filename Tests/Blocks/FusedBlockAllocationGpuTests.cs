using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Tests.Blocks;

/// <summary>
/// Allocation-free steady state: once a shape class is reserved, tuned and JIT-compiled, a Forward and a Backward
/// through the device API allocate 0 managed bytes on the calling thread (GC.GetAllocatedBytesForCurrentThread):
/// cached specs, plans and kernels, no per-call arrays, closures or eagerly formatted check messages.
/// </summary>
[TestClass]
[TestCategory(GpuTest.Category)]
[DoNotParallelize]
public sealed class FusedBlockAllocationGpuTests
{
    private const string Config = "small";

    [TestMethod]
    [DataRow(8, false, false, false, DisplayName = "T=8 (router GEMV), default configs")]
    [DataRow(8, true, false, false, DisplayName = "T=8, autotune")]
    [DataRow(300, false, false, false, DisplayName = "T=300 (router GEMM), default configs")]
    [DataRow(300, true, true, false, DisplayName = "T=300, autotune, permute_x")]
    [DataRow(130, true, false, true, DisplayName = "T=130, autotune, permute_y")]
    [DataRow(1500, false, false, false, DisplayName = "T=1500 (router dW split), default configs")]
    [DataRow(1500, true, false, false, DisplayName = "T=1500 (router dW split), autotune")]
    public void WarmForwardAndBackward_AllocateNoManagedMemory(int tokens, bool autotune, bool permuteX, bool permuteY)
    {
        CudaContext context = GpuTest.RequireContext();
        MoeConfig c = BlockTestModels.Config(Config);
        var options = new FusedBlockOptions { Autotune = autotune, PermuteX = permuteX, PermuteY = permuteY };
        using var block = new Qwen3MoeFusedBlock(BlockTestModels.DeviceWeights(context, Config, ScalarType.BFloat16), options);
        (float[] x, float[] dY) = BlockTestModels.Inputs(Config, ScalarType.BFloat16, tokens);
        using var stream = new CudaStream(context);
        using var xd = FusedBlockGpuTests.UploadBf16(context, x);
        using var dYd = FusedBlockGpuTests.UploadBf16(context, dY);
        using var y = new DeviceBuffer<BFloat16>(context, x.Length);
        using var dX = new DeviceBuffer<BFloat16>(context, x.Length);
        using var dRouter = new DeviceBuffer<BFloat16>(context, c.GateElements);
        using var dGateUp = new DeviceBuffer<BFloat16>(context, c.GateUpProjElements);
        using var dDown = new DeviceBuffer<BFloat16>(context, c.DownProjElements);
        var gradients = new DeviceGradients<BFloat16>(dX, dRouter, dGateUp, dDown);

        block.Reserve(tokens, backward: true);
        for (int warm = 0; warm < 2; warm++) // tunes, JIT-compiles and loads every kernel of the shape class
        {
            block.Forward(stream, xd, y, tokens);
            block.Backward(stream, dYd, gradients);
        }
        stream.Synchronize();

        long before = GC.GetAllocatedBytesForCurrentThread();
        block.Forward(stream, xd, y, tokens);
        block.Backward(stream, dYd, gradients);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        stream.Synchronize();
        Assert.AreEqual(0L, allocated, $"a warm Forward + Backward (T={tokens}) allocated {allocated} managed bytes");

        // and the work ran: y is finite (the output was not skipped)
        var raw = new BFloat16[x.Length];
        y.CopyToHost(raw);
        Assert.IsTrue(raw.All(v => float.IsFinite((float)v)), "y has a non-finite element");
    }
}
