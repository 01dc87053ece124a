using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;
using MoeNative.Reference.IO;
using MoeNative.Tests.Cli;

namespace MoeNative.Tests.Blocks;

/// <summary>
/// Checkpoint → device on a GPU: the streaming loader (pinned staging, async copies, GPU conversion) against the host
/// loader's values (<see cref="MoeCheckpoint.LoadWeights(MoeConfig, string, int?, ScalarType)"/>: whole tensors
/// converted on the host, rounded to the device dtype), bit for bit, in both layouts and every file/device dtype pair;
/// a whole synthetic multi-layer checkpoint with its progress reports; host memory of a load measured.
/// Device buffers are poisoned before streaming, so a missed byte reads back NaN.
/// </summary>
[TestClass]
[TestCategory(GpuTest.Category)]
[DoNotParallelize]
public sealed class CheckpointLoadGpuTests
{
    private static readonly MoeConfig Small = new(HiddenSize: 64, IntermediateSize: 48, NumExperts: 8, TopK: 2);

    public TestContext TestContext { get; set; } = null!;

    private static void AssertSame(MoeWeights expected, MoeWeights actual, string what)
    {
        CollectionAssert.AreEqual(expected.Gate, actual.Gate, $"{what}: router");
        CollectionAssert.AreEqual(expected.GateUpProj, actual.GateUpProj, $"{what}: gate_up");
        CollectionAssert.AreEqual(expected.DownProj, actual.DownProj, $"{what}: down");
    }

    [TestMethod]
    [DataRow(CheckpointLayout.PerExpert, SafetensorsDType.BF16, ScalarType.BFloat16)]
    [DataRow(CheckpointLayout.PerExpert, SafetensorsDType.BF16, ScalarType.Float16)]
    [DataRow(CheckpointLayout.PerExpert, SafetensorsDType.BF16, ScalarType.Float32)]
    [DataRow(CheckpointLayout.PerExpert, SafetensorsDType.F16, ScalarType.BFloat16)]
    [DataRow(CheckpointLayout.PerExpert, SafetensorsDType.F32, ScalarType.Float16)]
    [DataRow(CheckpointLayout.Fused, SafetensorsDType.BF16, ScalarType.BFloat16)]
    [DataRow(CheckpointLayout.Fused, SafetensorsDType.F16, ScalarType.Float16)]
    [DataRow(CheckpointLayout.Fused, SafetensorsDType.F16, ScalarType.Float32)]
    [DataRow(CheckpointLayout.Fused, SafetensorsDType.F32, ScalarType.BFloat16)]
    [DataRow(CheckpointLayout.Fused, SafetensorsDType.F32, ScalarType.Float32)]
    public void LayerLoader_EachLayoutAndDtype_EqualsHostValues(CheckpointLayout layout, SafetensorsDType fileDType, ScalarType dtype)
    {
        CudaContext ctx = GpuTest.RequireContext();
        int seed = 300 + (int)layout * 10 + (int)fileDType;
        using var folder = new TempFolder("load-layer");
        SyntheticCheckpoint.Write(folder.Path("ckpt"), Small, 2, fileDType, layout, seed);
        // 4 KiB chunks: a 6 KiB per-expert tensor spans two, the fused ones dozens; conversion runs through both scratch slots.
        using Qwen3MoeDeviceWeights device = Qwen3MoeDeviceWeights.FromSafetensors(ctx, Small, folder.Path("ckpt"), dtype, layer: 1,
            new CheckpointLoadOptions { ChunkBytes = 4096 });
        MoeWeights expected = MoeCheckpoint.LoadWeights(Small, folder.Path("ckpt"), 1, dtype);
        AssertSame(expected, device.Download(), $"{layout} {fileDType} -> {dtype.ShortName()} (seed {seed})");
        Assert.AreEqual(dtype, device.DType);
    }

    [TestMethod]
    public void ModelLoader_EveryLayerOfASyntheticCheckpoint_WithProgress()
    {
        CudaContext ctx = GpuTest.RequireContext();
        const int layers = 5, seed = 41;
        using var folder = new TempFolder("load-model");
        long fileBytes = SyntheticCheckpoint.Write(folder.Path("ckpt"), Small, layers, SafetensorsDType.BF16, CheckpointLayout.PerExpert, seed);
        var reports = new List<CheckpointLoadProgress>();
        using Qwen3MoeModelWeights model = Qwen3MoeModelWeights.Load(ctx, Small, folder.Path("ckpt"), ScalarType.Float16,
            new CheckpointLoadOptions { ChunkBytes = 16 << 10, Progress = reports.Add });

        CollectionAssert.AreEqual(Enumerable.Range(0, layers).ToArray(), model.Layers.ToArray());
        Assert.AreEqual(fileBytes, model.LoadStats.FileBytes);
        Assert.AreEqual(layers * (Small.GateElements + Small.GateUpProjElements + Small.DownProjElements) * 2, model.SizeInBytes);
        Assert.IsTrue(reports.Count > layers, "one report per chunk");
        Assert.IsTrue(reports.Zip(reports.Skip(1)).All(p => p.Second.BytesDone >= p.First.BytesDone && p.Second.Layer >= p.First.Layer), "monotonic");
        Assert.AreEqual(fileBytes, reports[^1].BytesDone);
        Assert.AreEqual(fileBytes, reports[^1].BytesTotal);
        Assert.AreEqual(layers, reports[^1].LayersDone);
        CollectionAssert.AreEqual(Enumerable.Range(0, layers).ToArray(), reports.Select(r => r.Layer).Distinct().ToArray());
        for (int l = 0; l < layers; l++)
            AssertSame(MoeCheckpoint.LoadWeights(Small, folder.Path("ckpt"), l, ScalarType.Float16), model.Layer(l).Download(), $"layer {l} (seed {seed})");
        Assert.ThrowsExactly<KeyNotFoundException>(() => model.Layer(layers));

        var partial = Qwen3MoeModelWeights.Load(ctx, Small, folder.Path("ckpt"), ScalarType.BFloat16, new CheckpointLoadOptions { Layers = [3, 1] });
        using (partial) CollectionAssert.AreEqual(new[] { 1, 3 }, partial.Layers.ToArray());
        StringAssert.Contains(Assert.ThrowsExactly<SafetensorsFormatException>(() =>
            Qwen3MoeModelWeights.Load(ctx, Small, folder.Path("ckpt"), ScalarType.BFloat16, new CheckpointLoadOptions { Layers = [layers] })).Message, "layer 5 has no MoE block");
    }

    [TestMethod]
    public void ModelLoader_HostMemoryStaysBounded_WhateverTheModelSize()
    {
        // 4 layers of H=1024, I=512, E=64 in bf16: 805 MB of file (a host-float load would hold 1.6 GB per copy);
        // staged through 2 x 8 MiB. Measured: the process's anonymous RSS sampled after every chunk.
        CudaContext ctx = GpuTest.RequireContext();
        var c = new MoeConfig(HiddenSize: 1024, IntermediateSize: 512, NumExperts: 64, TopK: 8);
        using var folder = new TempFolder("load-memory");
        long fileBytes = SyntheticCheckpoint.Write(folder.Path("ckpt"), c, 4, SafetensorsDType.BF16, CheckpointLayout.PerExpert, 5);
        GC.Collect();
        using Qwen3MoeModelWeights model = Qwen3MoeModelWeights.Load(ctx, c, folder.Path("ckpt"), ScalarType.BFloat16,
            new CheckpointLoadOptions { ChunkBytes = 8 << 20 });
        CheckpointLoadStats s = model.LoadStats;
        TestContext.WriteLine($"{fileBytes / 1e6:0} MB in {s.Elapsed.TotalSeconds:0.000} s = {s.GigabytesPerSecond:0.00} GB/s; RssAnon {s.HostBaselineBytes >> 20} -> peak {s.HostPeakBytes >> 20} MiB; pinned {s.PinnedBytes >> 20} MiB");
        Assert.AreEqual(fileBytes, s.FileBytes);
        Assert.AreEqual(16L << 20, s.PinnedBytes);
        if (OperatingSystem.IsLinux()) Assert.IsGreaterThan(0L, s.HostBaselineBytes, "RssAnon is readable on Linux");
        Assert.IsLessThan(128L << 20, s.HostPeakBytes - s.HostBaselineBytes, "host memory: the staging and little else, for 805 MB of weights");
        // Spot check the last layer against the host loader (the bit-exact layout/dtype grid is the test above).
        MoeWeights expected = MoeCheckpoint.LoadWeights(c, folder.Path("ckpt"), 3, ScalarType.BFloat16);
        AssertSame(expected, model.Layer(3).Download(), "layer 3");
    }
}
