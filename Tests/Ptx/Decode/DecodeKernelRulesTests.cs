using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Decode;

/// <summary>CPU checks of what the decode kernels accept and of the option that picks them.</summary>
[TestClass]
public sealed class DecodeKernelRulesTests
{
    [TestMethod]
    [DataRow(ScalarType.BFloat16, 128, 2048, 768, true, DisplayName = "Qwen3-30B-A3B bf16")]
    [DataRow(ScalarType.Float16, 128, 4096, 1536, true, DisplayName = "Qwen3-235B-A22B fp16")]
    [DataRow(ScalarType.BFloat16, 256, 8, 8, true, DisplayName = "E = 256, smallest H and I")]
    [DataRow(ScalarType.Float32, 128, 2048, 768, false, DisplayName = "fp32: no decode entries")]
    [DataRow(ScalarType.BFloat16, 257, 2048, 768, false, DisplayName = "E > 256")]
    [DataRow(ScalarType.BFloat16, 0, 2048, 768, false, DisplayName = "E = 0")]
    [DataRow(ScalarType.BFloat16, 128, 2044, 768, false, DisplayName = "H not a multiple of 8")]
    [DataRow(ScalarType.BFloat16, 128, 2048, 764, false, DisplayName = "I not a multiple of 8")]
    [DataRow(ScalarType.BFloat16, 128, 0, 768, false, DisplayName = "H = 0")]
    public void CanDecode_FollowsTheKernelsLimits(ScalarType dtype, int experts, int hidden, int inter, bool expected) =>
        Assert.AreEqual(expected, MoeKernels.CanDecode(dtype, experts, hidden, inter));

    [TestMethod]
    [DataRow(1, 8, true, DisplayName = "Qwen3 T = 1, k = 8")]
    [DataRow(1, 1, true, DisplayName = "k = 1")]
    [DataRow(1, 32, true, DisplayName = "k = 32: one word per lane of the publishing warp")]
    [DataRow(1, 33, false, DisplayName = "k = 33")]
    [DataRow(2, 8, false, DisplayName = "T = 2: experts may hold several rows")]
    [DataRow(0, 8, false, DisplayName = "T = 0")]
    public void CanRouteRecord_IsOneTokenAndAtMost32Experts(int tokens, int topK, bool expected) =>
        Assert.AreEqual(expected, MoeKernels.CanRouteRecord(tokens, topK));

    [TestMethod]
    public void DecodeAligned_NeedsSixteenBytes()
    {
        Assert.IsTrue(MoeKernels.DecodeAligned(new DeviceRange(0x1000, 64), new DeviceRange(0x2010, 64)));
        Assert.IsFalse(MoeKernels.DecodeAligned(new DeviceRange(0x1000, 64), new DeviceRange(0x2008, 64)));
    }

    [TestMethod]
    [DataRow(1, 2048, 1, 0)]
    [DataRow(2, 2048, 2, 0)]
    [DataRow(3, 2048, 2, 0)]
    [DataRow(4, 4096, 2, 0)]
    [DataRow(5, 2048, 2, 2)]
    [DataRow(8, 2048, 2, 2)]
    [DataRow(16, 2048, 2, 2)]
    [DataRow(8, 4096, 2, 1)]
    [DataRow(64, 4096, 2, 1)]
    [DataRow(8, 1024, 2, 4)]
    [DataRow(8, 8192, 2, 1)]
    public void DefaultTuning_IsTheMeasuredBest_WithAnEntryForItsWidth(int tokens, int hidden, int rows, int columns)
    {
        DecodeTuning t = DecodeTuning.For(tokens, hidden);
        Assert.AreEqual(rows, t.RowsPerPass);
        Assert.AreEqual(columns, t.ColumnsPerWarp, "walk to one wave up to T = 4; above, at least 16 KiB of gate/up rows per warp (2 columns at H = 2048, 1 at H = 4096)");
        Assert.IsFalse(t.PrefetchGateUp, "the L2 prefetch measured slower at every T");
        Assert.IsFalse(t.PrefetchDown, "the L2 prefetch measured slower at every T");
        Assert.AreEqual(tokens <= 4, t.FillDown, "the L2 fill of the down weights up to T = 4");
        CollectionAssert.Contains(MoeKernelModules.DecodeRowsPerPass.ToArray(), rows, "the module has no entry for this width");
    }

    [TestMethod]
    [DataRow(false, 768, 8L, 132, 10, 96, DisplayName = "gate/up 30B T=1 (r1, 10 resident): 192 x 8 CTAs over 1320 -> 2 columns per warp")]
    [DataRow(false, 1536, 8L, 132, 10, 128, DisplayName = "gate/up 235B T=1: 384 x 8 over 1320 -> 3 columns per warp")]
    [DataRow(false, 1536, 8L, 132, 7, 96, DisplayName = "gate/up 235B T=1, 7 resident (a JIT with more registers): 3072 over 924 -> 4")]
    [DataRow(false, 768, 64L, 132, 9, 18, DisplayName = "gate/up 30B T=8 (r2, 9 resident): 192 x 64 over 1188 -> 11 columns per warp")]
    [DataRow(false, 768, 64L, 132, 6, 12, DisplayName = "gate/up 30B T=8, 6 resident: 12288 over 792 -> 16 columns per warp")]
    [DataRow(false, 8, 1L, 132, 10, 2, DisplayName = "gate/up tiny I: one column per warp")]
    [DataRow(false, 768, 8L, 132, 0, 16, DisplayName = "gate/up 0 resident (does not fit) counts as 1: 1536 over 132 -> 12 columns per warp")]
    [DataRow(true, 2048, 8L, 132, 12, 128, DisplayName = "down 30B T=1 (r1, 12 resident): 256 x 8 CTAs over 1584 -> 2 blocks per CTA")]
    [DataRow(true, 4096, 8L, 132, 12, 171, DisplayName = "down 235B T=1: 512 x 8 over 1584 -> 3 blocks per CTA")]
    [DataRow(true, 4096, 8L, 132, 10, 128, DisplayName = "down 235B T=1, 10 resident: 4096 over 1320 -> 4 blocks per CTA")]
    [DataRow(true, 2048, 64L, 132, 10, 20, DisplayName = "down 30B T=8 (r2, 10 resident): 256 x 64 over 1320 -> 13 blocks per CTA")]
    [DataRow(true, 4096, 256L, 1, 10, 16, DisplayName = "down on one SM: capped at 32 blocks per CTA")]
    public void Grid_FitsOneWaveOfTheResidentCtas(bool down, int dim, long gridExperts, int sms, int resident, int expected)
    {
        // gate/up: dim = I, a warp per column (4 per CTA); down: dim = H, 8 columns per CTA, at most 32 blocks per CTA
        int units = down ? DecodeTuning.DownColumnBlocks(dim) : DecodeTuning.GateColumnCtas(dim);
        Assert.AreEqual(down ? dim / 8 : (dim + 3) / 4, units);
        int cap = down ? DecodeTuning.MaxDownBlocksPerCta : int.MaxValue;
        int grid = new DecodeTuning(1, 0, false, false).GridX(units, cap, gridExperts, sms, resident);
        Assert.AreEqual(expected, grid);
        Assert.IsLessThanOrEqualTo(cap, (units + grid - 1) / grid, "walk length");
        if (!down) Assert.IsLessThanOrEqualTo((long)sms * Math.Max(1, resident), grid * gridExperts, "one wave");
        Assert.AreEqual(units, new DecodeTuning(2, 1, false, false).GridX(units, cap, gridExperts, sms, resident), "one unit per CTA");
        Assert.AreEqual((units + 2) / 3, new DecodeTuning(2, 3, false, false).GridX(units, cap, gridExperts, sms, resident), "a 3-unit walk");
        Assert.AreEqual(down ? (units + 31) / 32 : 1, new DecodeTuning(2, 1000, false, false).GridX(units, cap, gridExperts, sms, resident), "the cap");
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void RouteRecordLayout_TheRoutingModuleAddressesItsLogitWordsWhereTheLauncherSizesThem(bool programmatic)
    {
        string text = MoeKernelModules.RoutingDecode(programmatic).Ptx;
        string address = $"add.u64 %a_words, %a_record, {MoeKernels.DecodeRouteRecordLogitWords};";
        Assert.AreEqual(2, text.Split(address).Length - 1, $"both dtype entries: {address}");
        Assert.AreEqual(2, text.Split("add.u64 %a_words, %a_record, ").Length - 1, "no entry uses another offset");
    }

    [TestMethod]
    public void TuningOverride_ReplacesTheNamedFields_AndRefusesBadText()
    {
        var d = new DecodeTuning(1, 0, true, true);
        Assert.AreEqual(d, DecodeTuningOverride.Parse(null).Apply(d));
        Assert.AreEqual(d, DecodeTuningOverride.Parse(" ").Apply(d));
        Assert.AreEqual(new DecodeTuning(4, 0, true, true), DecodeTuningOverride.Parse("rows=4").Apply(d));
        Assert.AreEqual(new DecodeTuning(8, 3, false, false), DecodeTuningOverride.Parse("rows=8, cols=3,prefetch=0").Apply(d));
        Assert.AreEqual(new DecodeTuning(1, 0, false, true), DecodeTuningOverride.Parse("prefetch_gate=0").Apply(d));
        Assert.AreEqual(new DecodeTuning(2, 1, false, true), DecodeTuningOverride.Parse("prefetch=0,prefetch_down=1").Apply(new DecodeTuning(2, 1, true, false)));
        Assert.AreEqual(new DecodeTuning(2, 1, true, false), DecodeTuningOverride.Parse("prefetch_down=1,prefetch=0,prefetch_gate=1").Apply(d with { RowsPerPass = 2, ColumnsPerWarp = 1 }));
        Assert.AreEqual(new DecodeTuning(1, 0, true, true, FillDown: true), DecodeTuningOverride.Parse("fill_down=1").Apply(d));
        Assert.AreEqual(d, DecodeTuningOverride.Parse("fill_down=0").Apply(d with { FillDown = true }));
        Assert.AreEqual(d with { TokenDown = false }, DecodeTuningOverride.Parse("token_down=0").Apply(d));
        Assert.AreEqual(d, DecodeTuningOverride.Parse("token_down=1").Apply(d with { TokenDown = false }));
        foreach (string bad in new[] { "rows=3", "rows", "cols=-1", "prefetch=2", "prefetch_down=2", "prefetch_gate=-1", "fill_down=2", "token_down=2", "speed=1", "rows=x" })
        {
            var e = Assert.ThrowsExactly<FormatException>(() => DecodeTuningOverride.Parse(bad), bad);
            StringAssert.Contains(e.Message, DecodeTuning.EnvironmentVariable);
        }
    }

    [TestMethod]
    // all of Wd[e] = H x I x 2 bytes when the hit experts' take at most half of a 60 MiB L2 (31,457,280 bytes), else 0
    [DataRow(1, 128, 8, 2048, 768, 3_145_728L, DisplayName = "Qwen3-30B-A3B T=1: 8 x 3,145,728 = 25,165,824 fits")]
    [DataRow(2, 128, 8, 2048, 768, 0L, DisplayName = "Qwen3-30B-A3B T=2: 16 x 3,145,728 = 50,331,648 does not")]
    [DataRow(1, 128, 8, 4096, 1536, 0L, DisplayName = "Qwen3-235B-A22B T=1: 8 x 12,582,912 does not")]
    [DataRow(1, 128, 10, 2048, 768, 3_145_728L, DisplayName = "10 hits: 31,457,280 exactly fits")]
    [DataRow(64, 8, 2, 2048, 768, 3_145_728L, DisplayName = "E = 8 caps the hits whatever T")]
    [DataRow(0, 128, 8, 2048, 768, 0L, DisplayName = "no tokens, no fill")]
    public void FillDownBytes_AllOfEachExpertWhenTheHitsFitHalfOfL2_ElseNone(int tokens, int experts, int topK, int hidden, int inter, long expected) =>
        Assert.AreEqual(expected, DecodeTuning.FillDownBytes(tokens, experts, topK, hidden, inter, 60L << 20));

    [TestMethod]
    public void DivisionMagic_GivesTheQuotientAfterOneStep_ForEveryKAndLargeSlots()
    {
        Assert.AreEqual(0u, MoeKernels.DecodeDivisionMagic(1));
        foreach (int k in new[] { 2, 3, 7, 8, 10, 128, 255, 256 })
        {
            uint m = MoeKernels.DecodeDivisionMagic(k);
            foreach (long slot in new long[] { 0, 1, k - 1, k, 5L * k + k - 1, 1 << 24, (1L << 31) - 1, (1L << 31) - k, 123456789 })
            {
                // the kernel's steps (decode_row_token.ptx): q = mulhi(slot, m); q -= (q * k > slot)
                uint q = (uint)(((ulong)slot * m) >> 32);
                if ((ulong)q * (ulong)k > (ulong)slot) q--;
                Assert.AreEqual(slot / k, (long)q, $"k={k} slot={slot}");
            }
        }
    }

    [TestMethod]
    public void CounterCount_IsOnePerEightColumns() => Assert.AreEqual(256, MoeKernels.DecodeCounterCount(2048));

    [TestMethod]
    public void Describe_NamesANonDefaultDecodeMode()
    {
        Assert.AreEqual("plain", new FusedBlockOptions().Describe());
        Assert.AreEqual("decode=off", new FusedBlockOptions { Decode = DecodeMode.Off }.Describe());
        Assert.AreEqual("permute_y decode=always", new FusedBlockOptions { PermuteY = true, Decode = DecodeMode.Always }.Describe());
    }
}
