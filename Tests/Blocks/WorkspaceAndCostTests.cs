using System.Text.Json;
using MoeNative.Blocks;
using MoeNative.Blocks.Benchmarking;
using MoeNative.Reference;
using MoeNative.Interop;

namespace MoeNative.Tests.Blocks;

/// <summary>CPU tests: workspace sizing arithmetic, shape classes, cost/floor arithmetic, rate table, JSON rows.</summary>
[TestClass]
public sealed class WorkspaceAndCostTests
{
    [TestMethod]
    [DataRow(1, 1)]
    [DataRow(2, 2)]
    [DataRow(7, 8)]
    [DataRow(128, 128)]
    [DataRow(129, 256)]
    [DataRow(1000, 1024)]
    [DataRow(16384, 16384)]
    public void ShapeClass_IsNextPowerOfTwo(int tokens, int expected) =>
        Assert.AreEqual(expected, BlockWorkspaceLayout.ShapeClassTokens(tokens));

    [TestMethod]
    [DataRow(0)]
    [DataRow(-1)]
    public void ShapeClass_NonPositive_Rejected(int tokens) =>
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => BlockWorkspaceLayout.ShapeClassTokens(tokens));

    // Hand-computed for "small" (H=256, I=128, E=32, k=4) at capacity 8 (TK = 32), bf16 (2 bytes):
    // Logits 8*32*2 = 512, Probs 8*32*4 = 1024, Selected 32*4 = 128 -> 256 aligned, RoutingWeights 32*2 = 64 -> 256,
    // MSizes 32*4 = 128 -> 256, Gather 128 -> 256, Inverse 128 -> 256, RoutingCounts 64*32*4 = 8192, XPermuted 32*256*2 = 16384,
    // FirstGemm 32*256*2 = 16384, Intermediate 32*128*2 = 8192, SecondGemm 32*256*2 = 16384.
    [TestMethod]
    [DataRow(false, 512 + 1024 + 256 + 256 + 256 + 256 + 256 + 8192 + 16384 + 16384 + 8192 + 16384, DisplayName = "plain")]
    [DataRow(true, 512 + 1024 + 256 + 256 + 256 + 256 + 256 + 8192 + 16384 + 8192 + 16384, DisplayName = "permute_x (no Xp)")]
    public void ForwardLayout_Small_HandComputedTotal(bool permuteX, long expectedBytes)
    {
        var layout = BlockWorkspaceLayout.Forward(MoeConfig.Preset("small"), ScalarType.BFloat16,
            new FusedBlockOptions { PermuteX = permuteX }, capacityTokens: 8);
        Assert.AreEqual(expectedBytes, layout.TotalBytes);
        Assert.AreEqual(!permuteX, layout.Contains(BlockBuffer.XPermuted));
        Assert.AreEqual(16384L, layout[BlockBuffer.SecondGemm].Bytes);
        Assert.AreEqual(32L * 256, layout[BlockBuffer.SecondGemm].Elements);
    }

    // Backward, same config/capacity, fp32 (4 bytes): DSecondGemm 32*256*4 = 32768, DRoutingWeights 32*4 = 128 -> 256,
    // DIntermediate 32*128*4 = 16384, DFirstGemm 32*256*4 = 32768, DXp expert 32768 (absent with PermuteX),
    // DXp slots 32768, DLogits 8*32*4 = 1024, DXRouter 8*256*4 = 8192.
    [TestMethod]
    [DataRow(false, false, 32768 + 256 + 16384 + 32768 + 32768 + 32768 + 1024 + 8192, DisplayName = "plain")]
    [DataRow(true, false, 32768 + 256 + 16384 + 32768 + 32768 + 1024 + 8192, DisplayName = "permute_x")]
    [DataRow(false, true, 32768 + 256 + 16384 + 32768 + 32768 + 1024 + 8192, DisplayName = "plain, GEMM scatters dX (fused)")]
    public void BackwardLayout_Small_HandComputedTotal(bool permuteX, bool gemmScattersDX, long expectedBytes)
    {
        var layout = BlockWorkspaceLayout.Backward(MoeConfig.Preset("small"), ScalarType.Float32,
            new FusedBlockOptions { PermuteX = permuteX }, capacityTokens: 8, gemmScattersDX);
        Assert.AreEqual(expectedBytes, layout.TotalBytes);
        Assert.AreEqual(!permuteX && !gemmScattersDX, layout.Contains(BlockBuffer.DXPermutedExpertOrder));
    }

    // The fused block's backward with the router dW split: + RouterWeightPartials [G,E,H] f32, G = 1 + capacity / P,
    // P = max(256, capacity / 32), from a capacity of 1024 on: Qwen3-30B-A3B (E=128, H=2048) bf16 at 16384: P = 512,
    // G = 33, 33 * 128 * 2048 * 4 = 34603008 bytes (a multiple of 256); at 1024: P = 256, G = 5, 5242880 bytes; at 512
    // and below nothing splits (no buffer); fp32 never splits.
    [TestMethod]
    [DataRow(16384, ScalarType.BFloat16, 34603008L)]
    [DataRow(1024, ScalarType.Float16, 5242880L)]
    [DataRow(512, ScalarType.BFloat16, 0L)]
    [DataRow(8, ScalarType.BFloat16, 0L)]
    [DataRow(16384, ScalarType.Float32, 0L)]
    public void BackwardLayout_RouterSplit_AddsTheF32Partials(int capacity, ScalarType dtype, long partialBytes)
    {
        MoeConfig c = MoeConfig.Preset("qwen3-30b-a3b");
        var plain = BlockWorkspaceLayout.Backward(c, dtype, FusedBlockOptions.Default, capacity, gemmScattersDX: true);
        var split = BlockWorkspaceLayout.Backward(c, dtype, FusedBlockOptions.Default, capacity, gemmScattersDX: true, routerSplit: true);
        Assert.IsFalse(plain.Contains(BlockBuffer.RouterWeightPartials));
        Assert.AreEqual(partialBytes > 0, split.Contains(BlockBuffer.RouterWeightPartials));
        if (partialBytes > 0)
        {
            Assert.AreEqual(partialBytes, split[BlockBuffer.RouterWeightPartials].Bytes);
            Assert.AreEqual(partialBytes / 4, split[BlockBuffer.RouterWeightPartials].Elements);
        }
        Assert.AreEqual(plain.TotalBytes + partialBytes, split.TotalBytes);
    }

    /// <summary>The routed SwiGLU backward keeps no dU [TK,H]: a w·A [TK,I] instead (30B at T=4096 bf16: 134 MB
    /// replaced by 50 MB).</summary>
    [TestMethod]
    [DataRow("qwen3-30b-a3b", ScalarType.BFloat16, 4096)]
    [DataRow("unaligned", ScalarType.Float32, 7)]
    public void BackwardLayout_RoutedSwiGlu_ReplacesDUByScaledIntermediate(string config, ScalarType dtype, int capacity)
    {
        MoeConfig c = MoeConfig.Preset(config);
        var combine = BlockWorkspaceLayout.Backward(c, dtype, FusedBlockOptions.Default, capacity, gemmScattersDX: true);
        var routed = BlockWorkspaceLayout.Backward(c, dtype, FusedBlockOptions.Default, capacity, gemmScattersDX: true, routedSwiGlu: true);
        long tk = (long)capacity * c.TopK;
        Assert.IsTrue(combine.Contains(BlockBuffer.DSecondGemm));
        Assert.IsFalse(combine.Contains(BlockBuffer.ScaledIntermediate));
        Assert.IsFalse(routed.Contains(BlockBuffer.DSecondGemm));
        Assert.AreEqual(tk * c.IntermediateSize, routed[BlockBuffer.ScaledIntermediate].Elements);
        Assert.AreEqual(tk * c.IntermediateSize * dtype.SizeOf(), routed[BlockBuffer.ScaledIntermediate].Bytes);
        Assert.IsTrue(routed.TotalBytes < combine.TotalBytes, "w·A [TK,I] is smaller than dU [TK,H] where I < H");
    }

    [TestMethod]
    [DataRow("qwen3-30b-a3b", ScalarType.BFloat16, 1024)]
    [DataRow("qwen3-30b-a3b", ScalarType.Float32, 16384)]
    [DataRow("small-k1", ScalarType.Float16, 1)]
    [DataRow("unaligned", ScalarType.BFloat16, 7)]
    public void Layouts_SlicesAlignedDisjointAndSized(string config, ScalarType dtype, int capacity)
    {
        MoeConfig c = MoeConfig.Preset(config);
        foreach (bool backward in new[] { false, true })
        {
            var layout = backward
                ? BlockWorkspaceLayout.Backward(c, dtype, FusedBlockOptions.Default, capacity)
                : BlockWorkspaceLayout.Forward(c, dtype, FusedBlockOptions.Default, capacity);
            long end = 0;
            foreach (WorkspaceSlice s in layout.Slices)
            {
                Assert.AreEqual(0, s.Offset % BlockWorkspaceLayout.Alignment, $"{s.Buffer} offset {s.Offset} not aligned");
                Assert.IsGreaterThanOrEqualTo(end, s.Offset, $"{s.Buffer} overlaps the previous slice");
                Assert.IsGreaterThan(0L, s.Bytes, $"{s.Buffer} is empty");
                end = s.Offset + s.Bytes;
            }
            Assert.IsGreaterThanOrEqualTo(end, layout.TotalBytes);
            Assert.IsLessThan(end + BlockWorkspaceLayout.Alignment, layout.TotalBytes);
        }
    }

    [TestMethod]
    public void ForwardLayout_Qwen3_T1024_Bf16_Elements()
    {
        MoeConfig c = MoeConfig.Preset("qwen3-30b-a3b"); // H=2048, I=768, E=128, k=8
        var layout = BlockWorkspaceLayout.Forward(c, ScalarType.BFloat16, FusedBlockOptions.Default, 1024);
        Assert.AreEqual(8192L * 1536, layout[BlockBuffer.FirstGemm].Elements);
        Assert.AreEqual(8192L * 1536 * 2, layout[BlockBuffer.FirstGemm].Bytes);
        Assert.AreEqual(1024L * 128 * 4, layout[BlockBuffer.Probs].Bytes);
        Assert.AreEqual(128L * 4, layout[BlockBuffer.MSizes].Bytes);
        Assert.ThrowsExactly<KeyNotFoundException>(() => BlockWorkspaceLayout.Forward(c, ScalarType.BFloat16,
            new FusedBlockOptions { PermuteX = true }, 1024)[BlockBuffer.XPermuted]);
    }

    // ---- cost and floor ---------------------------------------------------------------------------------------------

    [TestMethod]
    public void Cost_Forward_Qwen3_T1_HandComputed()
    {
        MoeConfig c = MoeConfig.Preset("qwen3-30b-a3b");
        MoeCost cost = MoeCost.Of(c, ScalarType.BFloat16, 1, 8, BenchmarkPass.Forward);
        // FLOPs: 2*H*E + 2*k*H*2I + 2*k*I*H = 2*2048*128 + 2*8*2048*1536 + 2*8*768*2048
        Assert.AreEqual(524288d + 50331648d + 25165824d, cost.Flops);
        // Bytes: 2 * (8 * 3*768*2048 + 128*2048 + 2*2048)
        Assert.AreEqual(2d * (37748736 + 262144 + 4096), cost.Bytes);
    }

    [TestMethod]
    public void Cost_ForwardBackward_IsThreeTimesForwardFlops()
    {
        MoeConfig c = MoeConfig.Preset("small");
        MoeCost f = MoeCost.Of(c, ScalarType.Float16, 100, 20, BenchmarkPass.Forward);
        MoeCost fb = MoeCost.Of(c, ScalarType.Float16, 100, 20, BenchmarkPass.ForwardBackward);
        Assert.AreEqual(3 * f.Flops, fb.Flops);
        // 3*hit*3IH + 3*EH + 4TH elements vs hit*3IH + EH + 2TH
        Assert.AreEqual(2d * (3 * 20 * 3 * 128 * 256 + 3 * 32 * 256 + 4 * 100 * 256), fb.Bytes);
    }

    // docs/DESIGN.md yardstick (H100, bf16, Qwen3-30B-A3B): floor fwd 0.024 ms at T=1 (memory bound),
    // 1.81 ms at T=16384 (compute bound). Our byte count is a slightly different lower bound: allow 5%.
    [TestMethod]
    [DataRow(1, 8, 0.025, DisplayName = "T=1")]
    [DataRow(16384, 128, 1.82, DisplayName = "T=16384")]
    public void Floor_MatchesDesignYardstick(int tokens, int hit, double expectedMs)
    {
        MoeConfig c = MoeConfig.Preset("qwen3-30b-a3b");
        DeviceRates h100 = DeviceRates.FromTable("NVIDIA H100 80GB HBM3")!;
        double floor = MoeCost.Of(c, ScalarType.BFloat16, tokens, hit, BenchmarkPass.Forward).FloorMilliseconds(h100);
        Assert.AreEqual(expectedMs, floor, expectedMs * 0.05);
    }

    [TestMethod]
    public void ExpertsHit_CountsDistinct()
    {
        Assert.AreEqual(3, MoeCost.ExpertsHit([0, 5, 5, 2, 0, 2], 8));
        Assert.AreEqual(0, MoeCost.ExpertsHit([], 8));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => MoeCost.ExpertsHit([8], 8));
    }

    [TestMethod]
    [DataRow("NVIDIA H100 80GB HBM3", 684.0, 3.02)]
    [DataRow("NVIDIA H100 SXM5 80GB", 684.0, 3.02)]
    [DataRow("NVIDIA H200", 694.0, 4.2)]
    [DataRow("NVIDIA H200 NVL", 694.0, 4.2)]
    public void Rates_Table_KnownCards(string name, double tflops, double tbps)
    {
        DeviceRates? rates = DeviceRates.FromTable(name);
        Assert.IsNotNull(rates);
        Assert.AreEqual(tflops, rates.TensorTflops);
        Assert.AreEqual(tbps, rates.BandwidthTBps);
        Assert.AreEqual("table", rates.Source);
    }

    [TestMethod]
    [DataRow("NVIDIA H100 PCIe")]
    [DataRow("NVIDIA A100-SXM4-80GB")]
    [DataRow("NVIDIA GeForce RTX 4090")]
    public void Rates_Table_UnknownCards_Null(string name) => Assert.IsNull(DeviceRates.FromTable(name));

    [TestMethod]
    public void Median_OddAndEven()
    {
        Assert.AreEqual(2.0, BlockBenchmark.Median([3.0, 1.0, 2.0]));
        Assert.AreEqual(2.5, BlockBenchmark.Median([4.0, 1.0, 2.0, 3.0]));
        Assert.ThrowsExactly<ArgumentException>(() => BlockBenchmark.Median([]));
    }

    [TestMethod]
    public void Report_Json_HasSnakeCaseRowFields()
    {
        var row = new BenchmarkRow("fused", 128, "fwd", 0.5, 10, 2000, 0.4, 80, 100, 128, 1e9, 1e9, "graph");
        var report = new BenchmarkReport("NVIDIA H100 80GB HBM3", DeviceRates.FromTable("NVIDIA H100 80GB HBM3")!, "qwen3-30b-a3b",
            2048, 768, 128, 8, "bf16", "autotune", DateTimeOffset.UnixEpoch, [row]);
        using JsonDocument doc = JsonDocument.Parse(report.ToJson());
        JsonElement first = doc.RootElement.GetProperty("rows")[0];
        Assert.AreEqual("fused", first.GetProperty("impl").GetString());
        Assert.AreEqual(0.5, first.GetProperty("median_ms").GetDouble());
        Assert.AreEqual(80, first.GetProperty("percent_of_floor").GetDouble());
        Assert.AreEqual(684, doc.RootElement.GetProperty("rates").GetProperty("tensor_tflops").GetDouble());
    }

    [TestMethod]
    public void BenchmarkOptions_Validation()
    {
        MoeConfig c = MoeConfig.Preset("small");
        Assert.ThrowsExactly<ArgumentException>(() => new BlockBenchmarkOptions { Config = c, Tokens = [] }.Validate());
        Assert.ThrowsExactly<ArgumentException>(() => new BlockBenchmarkOptions { Config = c, Tokens = [1, 0] }.Validate());
        Assert.ThrowsExactly<ArgumentException>(() => new BlockBenchmarkOptions
        {
            Config = c, Tokens = [1], Backward = true, Fused = new FusedBlockOptions { FuseMulPost = true },
        }.Validate());
        new BlockBenchmarkOptions { Config = c, Tokens = [1, 128] }.Validate(); // must not throw
    }

    // ---- host conversions ---------------------------------------------------------------------------------------

    [TestMethod]
    [DataRow(ScalarType.BFloat16)]
    [DataRow(ScalarType.Float16)]
    [DataRow(ScalarType.Float32)]
    public void StorageConvert_RoundTrip_EqualsReferenceRounding(ScalarType dtype)
    {
        float[] values = TensorRandom.Normal(5_000_003, 42, 3f); // > 2 parallel chunks, odd length
        var bytes = new byte[values.LongLength * dtype.SizeOf()];
        StorageConvert.ToStorageParallel(values, dtype, bytes);
        var back = new float[values.Length];
        StorageConvert.FromStorageParallel(bytes, dtype, back);
        for (int i = 0; i < values.Length; i += 997)
            Assert.AreEqual(StoragePrecision.Round(values[i], dtype), back[i], $"element {i}");
        Assert.AreEqual(StoragePrecision.Round(values[^1], dtype), back[^1]);
    }
}
