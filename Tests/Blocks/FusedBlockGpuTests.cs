using System.Runtime.InteropServices;
using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Tests.Blocks;

/// <summary>GPU tests of the fused block beyond the three-way numerics: graphs, options, device API, lifetime.</summary>
[TestClass]
[TestCategory(GpuTest.Category)]
[DoNotParallelize]
public sealed class FusedBlockGpuTests
{
    private const string Config = "small";

    private static Qwen3MoeFusedBlock NewBlock(ScalarType dtype, FusedBlockOptions? options = null) =>
        new(BlockTestModels.DeviceWeights(GpuTest.RequireContext(), Config, dtype), options);

    private static ushort[] ToBf16Bits(float[] values)
    {
        var bits = new ushort[values.Length];
        for (int i = 0; i < values.Length; i++) bits[i] = BFloat16.RoundToBits(values[i]);
        return bits;
    }

    internal static DeviceBuffer<BFloat16> UploadBf16(CudaContext context, float[] values)
    {
        var buffer = new DeviceBuffer<BFloat16>(context, values.Length);
        buffer.CopyFromHost(MemoryMarshal.Cast<ushort, BFloat16>(ToBf16Bits(values).AsSpan()));
        return buffer;
    }

    private static float[] DownloadBf16(DeviceBuffer<BFloat16> buffer, long count)
    {
        var raw = new BFloat16[count];
        buffer.CopyToHost(raw);
        return raw.Select(v => (float)v).ToArray();
    }

    [TestMethod]
    [DataRow(false, false, 7)]
    [DataRow(true, false, 128)]
    [DataRow(false, true, 33)]
    public void Graph_ReplayEqualsDirectLaunches(bool permuteX, bool permuteY, int tokens)
    {
        CudaContext context = GpuTest.RequireContext();
        MoeConfig c = BlockTestModels.Config(Config);
        using var block = NewBlock(ScalarType.BFloat16, new FusedBlockOptions { PermuteX = permuteX, PermuteY = permuteY, Autotune = true });
        (float[] x, _) = BlockTestModels.Inputs(Config, ScalarType.BFloat16, tokens);
        using var stream = new CudaStream(context);
        using var xd = UploadBf16(context, x);
        using var yDirect = new DeviceBuffer<BFloat16>(context, x.Length);
        using var yGraph = new DeviceBuffer<BFloat16>(context, x.Length);

        yDirect.FillBytes(0xFF, stream);
        block.Forward(stream, xd, yDirect, tokens); // also allocates the workspace and autotunes
        stream.Synchronize();
        float[] direct = DownloadBf16(yDirect, x.Length);

        yGraph.FillBytes(0xFF, stream);
        stream.Synchronize();
        using var graph = CudaGraph.Capture(stream, s => block.Forward(s, xd, yGraph, tokens));
        // Nothing runs during capture: the output is still poisoned.
        Assert.IsTrue(float.IsNaN(DownloadBf16(yGraph, 1)[0]), "capture must not execute the work");
        graph.Launch(stream);
        graph.Launch(stream); // replays are idempotent
        stream.Synchronize();
        float[] replay = DownloadBf16(yGraph, x.Length);

        Assert.AreEqual(0, replay.Count(float.IsNaN), "graph replay left NaN (unwritten) outputs");
        CollectionAssert.AreEqual(direct, replay, "graph replay must equal direct launches bit for bit");
        Assert.AreEqual(x.Length, (long)tokens * c.HiddenSize);
    }

    // The backward captured alone (after a warm forward + backward), at T = 1500: the router dW runs split over row
    // chunks (f32 partials from the device m_sizes table, then the reduce), so the capture covers it.
    [TestMethod]
    public void Graph_BackwardReplayEqualsDirectLaunches_WithTheRouterDwSplit()
    {
        const int Tokens = 1500;
        CudaContext context = GpuTest.RequireContext();
        MoeConfig c = BlockTestModels.Config(Config);
        using var block = NewBlock(ScalarType.BFloat16);
        (float[] x, float[] dY) = BlockTestModels.Inputs(Config, ScalarType.BFloat16, Tokens);
        using var stream = new CudaStream(context);
        using var xd = UploadBf16(context, x);
        using var dYd = UploadBf16(context, dY);
        using var y = new DeviceBuffer<BFloat16>(context, x.Length);
        DeviceBuffer<BFloat16>[] direct = [new(context, x.Length), new(context, c.GateElements), new(context, c.GateUpProjElements), new(context, c.DownProjElements)];
        DeviceBuffer<BFloat16>[] replay = [new(context, x.Length), new(context, c.GateElements), new(context, c.GateUpProjElements), new(context, c.DownProjElements)];
        try
        {
            block.Forward(stream, xd, y, Tokens);
            block.Backward(stream, dYd, new DeviceGradients<BFloat16>(direct[0], direct[1], direct[2], direct[3]));
            foreach (DeviceBuffer<BFloat16> g in replay) g.FillBytes(0xFF, stream);
            stream.Synchronize();
            using var graph = CudaGraph.Capture(stream, s => block.Backward(s, dYd, new DeviceGradients<BFloat16>(replay[0], replay[1], replay[2], replay[3])));
            Assert.IsTrue(float.IsNaN(DownloadBf16(replay[1], 1)[0]), "capture must not execute the work");
            graph.Launch(stream);
            graph.Launch(stream);
            stream.Synchronize();
            string[] names = ["grad hidden_states", "grad gate", "grad gate_up_proj", "grad down_proj"];
            for (int i = 0; i < names.Length; i++)
            {
                float[] d = DownloadBf16(direct[i], direct[i].Length), r = DownloadBf16(replay[i], replay[i].Length);
                Assert.AreEqual(0, r.Count(float.IsNaN), $"{names[i]}: graph replay left NaN (unwritten) outputs");
                CollectionAssert.AreEqual(d, r, $"{names[i]}: graph replay must equal direct launches bit for bit");
            }
        }
        finally
        {
            foreach (DeviceBuffer<BFloat16> g in direct.Concat(replay)) g.Dispose();
        }
    }

    [TestMethod]
    [DataRow(ScalarType.BFloat16)]
    [DataRow(ScalarType.Float16)]
    [DataRow(ScalarType.Float32)]
    public void FuseMulPost_ForwardMatchesPlain_BackwardThrows(ScalarType dtype)
    {
        const int tokens = 64;
        (float[] x, float[] dY) = BlockTestModels.Inputs(Config, dtype, tokens);
        using var plain = NewBlock(dtype);
        using var fused = NewBlock(dtype, new FusedBlockOptions { FuseMulPost = true });
        MoeIntermediates a = plain.Forward(x, tokens);
        MoeIntermediates b = fused.Forward(x, tokens, a.Routing);
        var log = new ComparisonLog(dtype);
        // NOTE: fuse_mul_post rounds w·G2 to the dtype before the sum; the plain path sums in fp32: within tolerance.
        log.Close("output (fuse_mul_post vs plain)", b.Output, a.Output);
        log.AssertAll($"fuse_mul_post {dtype.ShortName()}");
        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => fused.Backward(dY));
        Assert.Contains("inference only", ex.Message);
    }

    [TestMethod]
    public void DeviceApi_EqualsHostApi_AndWorkspaceIsReused()
    {
        CudaContext context = GpuTest.RequireContext();
        MoeConfig c = BlockTestModels.Config(Config);
        const int tokens = 100;
        (float[] x, float[] dY) = BlockTestModels.Inputs(Config, ScalarType.BFloat16, tokens);
        using var block = NewBlock(ScalarType.BFloat16);
        MoeIntermediates host = block.Forward(x, tokens);
        MoeGradients hostGrads = block.Backward(dY);
        int capacity = block.WorkspaceCapacityTokens;
        long bytes = block.WorkspaceBytes;
        Assert.AreEqual(128, capacity, "T=100 belongs to the shape class 128");

        using var stream = new CudaStream(context);
        using var xd = UploadBf16(context, x);
        using var dYd = UploadBf16(context, dY);
        using var y = new DeviceBuffer<BFloat16>(context, x.Length);
        using var dX = new DeviceBuffer<BFloat16>(context, x.Length);
        using var dRouter = new DeviceBuffer<BFloat16>(context, c.GateElements);
        using var dGateUp = new DeviceBuffer<BFloat16>(context, c.GateUpProjElements);
        using var dDown = new DeviceBuffer<BFloat16>(context, c.DownProjElements);
        foreach (var b in new[] { y, dX, dRouter, dGateUp, dDown }) b.FillBytes(0xFF, stream);
        block.Forward(stream, xd, y, tokens);
        block.Backward(stream, dYd, new DeviceGradients<BFloat16>(dX, dRouter, dGateUp, dDown));
        stream.Synchronize();

        CollectionAssert.AreEqual(host.Output, DownloadBf16(y, x.Length));
        CollectionAssert.AreEqual(hostGrads.HiddenStates, DownloadBf16(dX, x.Length));
        CollectionAssert.AreEqual(hostGrads.Gate, DownloadBf16(dRouter, c.GateElements));
        CollectionAssert.AreEqual(hostGrads.GateUpProj, DownloadBf16(dGateUp, c.GateUpProjElements));
        CollectionAssert.AreEqual(hostGrads.DownProj, DownloadBf16(dDown, c.DownProjElements));
        Assert.AreEqual(capacity, block.WorkspaceCapacityTokens, "same shape class: no reallocation");
        Assert.AreEqual(bytes, block.WorkspaceBytes);

        block.Forward(x.AsSpan(0, 50 * c.HiddenSize).ToArray(), 50);
        Assert.AreEqual(capacity, block.WorkspaceCapacityTokens, "smaller T reuses the workspace");
    }

    [TestMethod]
    public void ZeroTokens_ReturnsEmpty_AndZeroWeightGradients()
    {
        MoeConfig c = BlockTestModels.Config(Config);
        using var block = NewBlock(ScalarType.Float32);
        MoeIntermediates r = block.Forward([], 0);
        Assert.IsEmpty(r.Output);
        Assert.AreEqual(0, r.Tokens);
        MoeGradients g = block.Backward([]);
        Assert.IsEmpty(g.HiddenStates);
        Assert.AreEqual(c.GateUpProjElements, g.GateUpProj.LongLength);
        Assert.IsTrue(g.GateUpProj.All(v => v == 0f) && g.DownProj.All(v => v == 0f) && g.Gate.All(v => v == 0f));
    }

    [TestMethod]
    public void WrongElementType_And_ShortBuffers_RejectedBeforeLaunch()
    {
        CudaContext context = GpuTest.RequireContext();
        MoeConfig c = BlockTestModels.Config(Config);
        using var block = NewBlock(ScalarType.BFloat16);
        using var stream = new CudaStream(context);
        using var xf = new DeviceBuffer<float>(context, 4L * c.HiddenSize);
        using var yf = new DeviceBuffer<float>(context, 4L * c.HiddenSize);
        var ex = Assert.ThrowsExactly<ArgumentException>(() => block.Forward(stream, xf, yf, 4));
        Assert.Contains("DeviceBuffer<BFloat16>", ex.Message);

        using var x = new DeviceBuffer<BFloat16>(context, 4L * c.HiddenSize);
        using var y = new DeviceBuffer<BFloat16>(context, 3L * c.HiddenSize);
        ex = Assert.ThrowsExactly<ArgumentException>(() => block.Forward(stream, x, y, 4));
        Assert.AreEqual("y", ex.ParamName);
        Assert.ThrowsExactly<ArgumentException>(() => block.Forward(stream, x, x, 4));
        Assert.ThrowsExactly<ArgumentException>(() => block.Forward(new float[5], 1));
        Assert.AreEqual(0, block.WorkspaceCapacityTokens, "nothing was allocated or launched");
    }

    [TestMethod]
    public void Backward_WithoutForward_Throws()
    {
        using var block = NewBlock(ScalarType.BFloat16);
        Assert.ThrowsExactly<InvalidOperationException>(() => block.Backward(new float[BlockTestModels.Config(Config).HiddenSize]));
    }

    [TestMethod]
    public void Disposed_Throws()
    {
        var block = NewBlock(ScalarType.BFloat16);
        block.Dispose();
        block.Dispose(); // idempotent
        Assert.ThrowsExactly<ObjectDisposedException>(() => block.Forward(new float[BlockTestModels.Config(Config).HiddenSize], 1));
        Assert.ThrowsExactly<ObjectDisposedException>(() => block.Backward([]));
    }

    [TestMethod]
    public void Autotune_TimesAtLeastThreeCandidatesPerTensorCoreGemm()
    {
        using var block = NewBlock(ScalarType.BFloat16, new FusedBlockOptions { Autotune = true });
        // NOTE: above the router GEMV's token range, so that every GEMM (the router's too) runs tiled and is tuned.
        const int Tokens = 2 * MoeNative.Ptx.MoeKernels.RouterLogitsGemvMaxTokens;
        (float[] x, float[] dY) = BlockTestModels.Inputs(Config, ScalarType.BFloat16, Tokens);
        block.Forward(x, Tokens);
        block.Backward(dY);
        // the router dW's row split (f32 partials) runs from a shape class of 1024 on: a second call there
        const int SplitTokens = MoeNative.Blocks.RouterRowSplit.MinSplitClass;
        (float[] x2, float[] dY2) = BlockTestModels.Inputs(Config, ScalarType.BFloat16, SplitTokens);
        block.Forward(x2, SplitTokens);
        block.Backward(dY2);
        foreach (FusedGemm gemm in Enum.GetValues<FusedGemm>())
        {
            int at = gemm == FusedGemm.RouterBackwardWeightSplit ? SplitTokens : Tokens;
            int timed = block.AutotuneTimings.Count(t => t.Gemm == gemm && t.ShapeClassTokens == at && !double.IsNaN(t.Milliseconds));
            Assert.IsGreaterThanOrEqualTo(FusedBlockOptions.MinimumAutotuneCandidates, timed, $"{gemm}: {timed} candidates timed");
            Assert.IsTrue(block.ChosenConfigs.ContainsKey((gemm, at)), $"{gemm}: no config chosen");
        }
        Assert.IsFalse(block.ChosenConfigs.ContainsKey((FusedGemm.RouterBackwardWeight, SplitTokens)), "T = 1024 ran the one-group router dW");
        Assert.IsFalse(block.ChosenConfigs.ContainsKey((FusedGemm.RouterBackwardWeightSplit, Tokens)), "T = 512 ran the router dW split");
    }
}
