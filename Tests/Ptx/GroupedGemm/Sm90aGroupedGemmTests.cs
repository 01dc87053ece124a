using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>The Hopper (sm_90a) forward NT, backward-data NN and backward-weight TN grouped GEMMs on the GPU against the
/// float64 host product over the sm_80 shape grid (empty and 1-row experts, N/K not multiples of any tile, K below one
/// 64-wide stage; for TN also 63/65/257-row experts and many stages per tile), every row mode, every sm_90a tile;
/// capped persistent grids; the null-config dispatch. Needs a compute capability 9.0 GPU (H100 /
/// H200): elsewhere Inconclusive with the reason. Filter: FullyQualifiedName~Sm90a.</summary>
[TestClass]
public sealed class Sm90aGroupedGemmGpuTests
{
    private static readonly ScalarType[] Dtypes = [ScalarType.BFloat16, ScalarType.Float16];

    /// <summary>(layout, dtype, config, case, mode) rows: NT x ForwardModes and NN x DataModes, every sm_90a tile.</summary>
    public static IEnumerable<object[]> Rows() =>
        from layout in new[] { GroupedGemmLayout.ForwardNT, GroupedGemmLayout.BackwardDataNN }
        from t in Dtypes
        from cfg in GroupedGemmSm90aSpecs.Candidates(layout, t)
        from gc in GemmCase.All
        where cfg.ShapeProblem(layout, gc.N, gc.K) is null // a staged tile needs two k-tiles (GroupedGemmArgumentTests: rejected)
        from m in Enumerable.Range(0, layout == GroupedGemmLayout.ForwardNT ? GroupedGemmGpuTests.ForwardModes.Length : GroupedGemmGpuTests.DataModes.Length)
        select new object[] { layout, t, cfg.Name, gc.Name, m };

    /// <summary>TN cases beyond the sm_80 grid: 63 / 65 / 257-row experts (partial last stages, 5 stages in one tile),
    /// K not a multiple of 128 or 256 (a half-empty second B half), N past one 128-row tile.</summary>
    internal static readonly GemmCase[] WeightCases =
    [
        .. GemmCase.All,
        new("E5_m63-0-257-65-1_k2_N200_K392", [63, 0, 257, 65, 1], 2, 200, 392),
        new("E2_m700-76_k4_N136_K264", [700, 76], 4, 136, 264),
    ];

    /// <summary>(dtype, config, case, mode) rows of the TN kernel: every sm_90a tile x WeightCases x WeightModes.</summary>
    public static IEnumerable<object[]> WeightRows() =>
        from t in Dtypes
        from cfg in GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.BackwardWeightTN, t)
        from gc in WeightCases
        from m in Enumerable.Range(0, GroupedGemmGpuTests.WeightModes.Length)
        select new object[] { t, cfg.Name, gc.Name, m };

    public static string WeightRowName(System.Reflection.MethodInfo method, object[] row) =>
        $"{method.Name}({((ScalarType)row[0]).ShortName()}, {row[1]}, {row[2]}, mode {row[3]})";

    public static string RowName(System.Reflection.MethodInfo method, object[] row) =>
        $"{method.Name}({GroupedGemmSpecs.Tag((GroupedGemmLayout)row[0])}, {((ScalarType)row[1]).ShortName()}, {row[2]}, {row[3]}, mode {row[4]})";

    internal static CudaContext RequireHopper()
    {
        CudaContext ctx = GpuTest.RequireContext();
        if (!GroupedGemm.Sm90aAvailable(ctx.ComputeCapability))
            Assert.Inconclusive($"The sm_90a kernels need compute capability 9.0; {ctx.Name} is {ctx.ComputeCapability.Major}.{ctx.ComputeCapability.Minor}.");
        return ctx;
    }

    private static GemmConfig Config(ScalarType t, string name) =>
        GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.ForwardNT, t).Concat(GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.BackwardWeightTN, t))
            .First(c => c.Name == name);

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DynamicData(nameof(Rows), DynamicDataDisplayName = nameof(RowName))]
    public void RowTiled_Sm90a_MatchesFloat64(GroupedGemmLayout layout, ScalarType dtype, string configName, string caseName, int mode)
    {
        CudaContext ctx = RequireHopper();
        GemmCase c = GemmCase.All.Single(x => x.Name == caseName);
        GemmConfig cfg = Config(dtype, configName);
        if (layout == GroupedGemmLayout.ForwardNT)
            GroupedGemmGpuTests.RunForward(ctx, GroupedGemm.For(ctx), dtype, cfg, c, GroupedGemmGpuTests.ForwardModes[mode], seed: 211 + mode);
        else
            GroupedGemmGpuTests.RunBackwardData(ctx, GroupedGemm.For(ctx), dtype, cfg, c, GroupedGemmGpuTests.DataModes[mode], seed: 241 + mode);
    }

    /// <summary>dW[e] = Σ_r dY[a(r)]ᵀ X[b(r)] on the sm_90a TN kernel against the float64 host product (experts without
    /// rows must come back as zeros: the output is poisoned first), then bitwise equal on a second run and on a
    /// 2-CTA grid (RunBackwardWeight's determinism check).</summary>
    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DynamicData(nameof(WeightRows), DynamicDataDisplayName = nameof(WeightRowName))]
    public void WeightGradient_Sm90a_MatchesFloat64(ScalarType dtype, string configName, string caseName, int mode)
    {
        CudaContext ctx = RequireHopper();
        GemmCase c = WeightCases.Single(x => x.Name == caseName);
        GroupedGemmGpuTests.RunBackwardWeight(ctx, GroupedGemm.For(ctx), dtype, Config(dtype, configName), c,
            GroupedGemmGpuTests.WeightModes[mode], seed: 271 + mode, checkDeterminism: mode == 3);
    }

    /// <summary>TN with grids of 1..3 CTAs: each CTA walks every (expert, n-tile, k-tile), empty experts included,
    /// with the ring running on across tiles and experts.</summary>
    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DataRow(ScalarType.BFloat16, 1, 128, 4)]
    [DataRow(ScalarType.BFloat16, 3, 256, 3)]
    [DataRow(ScalarType.Float16, 2, 256, 3)]
    [DataRow(ScalarType.Float16, 1, 128, 5)]
    public void WeightGradient_Sm90a_SmallGridsWalkEveryTile(ScalarType dtype, int gridLimit, int blockN, int stages)
    {
        CudaContext ctx = RequireHopper();
        var gemm = new GroupedGemm(ctx) { GridLimitForTesting = gridLimit };
        foreach (GemmCase c in WeightCases)
            GroupedGemmGpuTests.RunBackwardWeight(ctx, gemm, dtype, GemmConfig.Wgmma(blockN, stages), c, GroupedGemmGpuTests.WeightModes[3],
                seed: 303, checkDeterminism: false);
    }

    /// <summary>A grid far smaller than the tile count: each CTA's producer and consumers walk many tiles across
    /// experts (empty ones too) with the ring running on across tile boundaries.</summary>
    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DataRow(ScalarType.BFloat16, 1, 128, 4, 1)]
    [DataRow(ScalarType.BFloat16, 3, 256, 3, 1)]
    [DataRow(ScalarType.Float16, 2, 128, 5, 1)]
    [DataRow(ScalarType.BFloat16, 1, 256, 4, 2)]   // one cluster (the grid rounds up to 2 CTAs) walks every pair of m-tiles
    [DataRow(ScalarType.Float16, 5, 128, 4, 2)]    // two clusters (5 rounds down to 4 CTAs)
    public void ForwardNT_Sm90a_SmallGridsWalkEveryTile(ScalarType dtype, int gridLimit, int blockN, int stages, int cluster)
    {
        CudaContext ctx = RequireHopper();
        var gemm = new GroupedGemm(ctx) { GridLimitForTesting = gridLimit };
        GemmConfig cfg = GemmConfig.Wgmma(blockN, stages, cluster);
        foreach (GemmCase c in GemmCase.All)
        {
            GroupedGemmGpuTests.RunForward(ctx, gemm, dtype, cfg, c, GroupedGemmGpuTests.ForwardModes[4], seed: 301);
            GroupedGemmGpuTests.RunBackwardData(ctx, gemm, dtype, cfg, c, GroupedGemmGpuTests.DataModes[2], seed: 302);
        }
    }

    /// <summary>A null config on a 9.0 device takes the sm_90a kernel for experts of 128+ rows (and the result is
    /// right); ForceSm80 keeps the sm_80 kernel.</summary>
    [TestMethod]
    [TestCategory(GpuTest.Category)]
    public void NullConfig_OnHopper_DispatchesBothPaths()
    {
        CudaContext ctx = RequireHopper();
        var hopper = new GroupedGemm(ctx) { ForceSm80 = false };
        var ampere = new GroupedGemm(ctx) { ForceSm80 = true };
        Assert.AreEqual("sm90a", hopper.PathName(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16));
        Assert.AreEqual("sm80", ampere.PathName(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16));
        GemmCase c = GemmCase.All[3]; // 300 / 129 / 0 rows: > 64 per active expert
        GroupedGemmGpuTests.RunForward(ctx, hopper, ScalarType.BFloat16, null, c, GroupedGemmGpuTests.ForwardModes[2], seed: 401);
        GroupedGemmGpuTests.RunForward(ctx, ampere, ScalarType.BFloat16, null, c, GroupedGemmGpuTests.ForwardModes[2], seed: 402);
    }
}

/// <summary>The sm_90a dispatch and configuration rules, on the CPU (planning only, fake pointers).</summary>
[TestClass]
public sealed class Sm90aGroupedGemmPlanTests
{
    private static readonly GroupedRows Rows = new(0x80000, 0x90000, 1024, 8, 2);
    private const int N = 1536, K = 2048;

    private static GroupedGemm.GemmPlan? Plan(GemmConfig? cfg, (int, int) cc, bool sm90a, int n = N, int k = K, ulong a = 0x100000)
    {
        const int es = 2;
        return GroupedGemm.Plan(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, cfg, cc, 132,
            new DeviceRange(a, (long)Rows.TotalRows * k * es), new DeviceRange(0x4000000, (long)Rows.Experts * n * k * es),
            new DeviceRange(0x8000000, (long)Rows.TotalRows * n * es), DeviceRange.Null, Rows, n, k, 0, 0, sm90a);
    }

    [TestMethod]
    public void NullConfig_TakesSm90aOnlyOn90AndWhenAllowed()
    {
        Assert.AreEqual(GemmMath.WgmmaSm90a, Plan(null, (9, 0), sm90a: true)!.Value.Spec.Math);
        Assert.AreEqual(GemmMath.MmaSm80, Plan(null, (9, 0), sm90a: false)!.Value.Spec.Math);
        Assert.AreEqual(GemmMath.MmaSm80, Plan(null, (8, 0), sm90a: true)!.Value.Spec.Math);
        Assert.AreEqual(GemmMath.MmaSm80, Plan(null, (10, 0), sm90a: true)!.Value.Spec.Math, "sm_90a code runs on 9.0 only");
    }

    [TestMethod]
    public void ExplicitSm90aConfig_OffHopper_IsRejected()
    {
        var ex = Assert.Throws<ArgumentException>(() => Plan(GemmConfig.Wgmma(128, 4), (8, 0), sm90a: false));
        Assert.AreEqual("config", ex.ParamName);
        StringAssert.Contains(ex.Message, "9.0");
    }

    [TestMethod]
    public void Sm90aConfig_WithUnalignedShapes_FallsBackToSimt()
    {
        Assert.AreEqual(GemmMath.Ffma, Plan(GemmConfig.Wgmma(128, 4), (9, 0), sm90a: true, k: 2044)!.Value.Spec.Math);
        Assert.AreEqual(GemmMath.Ffma, Plan(GemmConfig.Wgmma(128, 4), (9, 0), sm90a: true, a: 0x100008)!.Value.Spec.Math);
    }

    [TestMethod]
    public void Candidates_AddSm90aTilesOnlyOn90()
    {
        IReadOnlyList<GemmConfig> hopper = GroupedGemm.Candidates(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, (9, 0), sm90a: true);
        IReadOnlyList<GemmConfig> ampere = GroupedGemm.Candidates(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, (8, 0), sm90a: true);
        Assert.IsTrue(hopper.Any(c => c.Family == GemmMath.WgmmaSm90a && c.Name.StartsWith("sm90a_", StringComparison.Ordinal)));
        Assert.IsFalse(ampere.Any(c => c.Family == GemmMath.WgmmaSm90a));
        Assert.IsTrue(GroupedGemm.Candidates(GroupedGemmLayout.BackwardDataNN, ScalarType.BFloat16, (9, 0), sm90a: true)
            .Any(c => c.Family == GemmMath.WgmmaSm90a), "the NN kernel has sm_90a tiles");
        Assert.IsTrue(GroupedGemm.Candidates(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16, (9, 0), sm90a: true)
            .Any(c => c.Family == GemmMath.WgmmaSm90a), "the TN kernel has sm_90a tiles");
        Assert.IsFalse(GroupedGemm.Candidates(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16, (9, 0), sm90a: false)
            .Any(c => c.Family == GemmMath.WgmmaSm90a), "forced sm_80");
        Assert.IsFalse(GroupedGemm.Candidates(GroupedGemmLayout.ForwardNT, ScalarType.Float32, (9, 0), sm90a: true)
            .Any(c => c.Family == GemmMath.WgmmaSm90a), "fp32 has no wgmma path");
    }

    [TestMethod]
    [DataRow(64, 128, 64, 4, 12, "BlockM must be 128")]
    [DataRow(128, 192, 64, 4, 12, "BlockN must be 64, 128 or 256")]
    [DataRow(128, 32, 64, 4, 12, "BlockN must be 64, 128 or 256")]
    [DataRow(128, 128, 32, 4, 12, "BlockK must be 64")]
    [DataRow(128, 128, 64, 4, 8, "Warps must be 12")]
    [DataRow(128, 128, 64, 2, 12, "Stages must be in 3..8")]
    [DataRow(128, 256, 64, 5, 12, "shared memory")]
    public void WgmmaConfig_Problems(int bm, int bn, int bk, int stages, int warps, string reason)
    {
        var cfg = new GemmConfig(bm, bn, bk, stages, warps, GemmMath.WgmmaSm90a);
        StringAssert.Contains(cfg.Problem(GemmMath.WgmmaSm90a) ?? "(accepted)", reason);
    }

    [TestMethod]
    public void WgmmaConfig_EveryLayout()
    {
        foreach (GroupedGemmLayout layout in Enum.GetValues<GroupedGemmLayout>())
            foreach (GemmConfig cfg in GroupedGemmSm90aSpecs.Candidates(layout, ScalarType.BFloat16))
                Assert.IsNull(cfg.Problem(GemmMath.WgmmaSm90a, layout), $"{layout} {cfg.Name}");
        // the TN kernel's double-buffered row table adds 1 KiB, its whole-tile epilogue staging 2 x 64 rows x BN x 2 B
        Assert.AreEqual(GemmConfig.Wgmma(256, 3).WgmmaSharedBytes + 1024 + 2 * 64 * 512,
            GemmConfig.Wgmma(256, 3).WgmmaSharedBytesOf(GroupedGemmLayout.BackwardWeightTN));
        Assert.AreEqual(GemmConfig.Wgmma(128, 5).WgmmaSharedBytes + 1024 + 2 * 64 * 256,
            GemmConfig.Wgmma(128, 5).WgmmaSharedBytesOf(GroupedGemmLayout.BackwardWeightTN));
        // 128x256 s4 (265 280 B) and 128x128 s6 (234 592 B) no longer fit 223 KiB with the staging; as row tiles they do
        StringAssert.Contains(GemmConfig.Wgmma(256, 4).Problem(GemmMath.WgmmaSm90a, GroupedGemmLayout.BackwardWeightTN) ?? "(accepted)", "shared memory");
        StringAssert.Contains(GemmConfig.Wgmma(128, 6).Problem(GemmMath.WgmmaSm90a, GroupedGemmLayout.BackwardWeightTN) ?? "(accepted)", "shared memory");
        Assert.IsNull(GemmConfig.Wgmma(256, 4).Problem(GemmMath.WgmmaSm90a, GroupedGemmLayout.ForwardNT));
        // 128x64 tiles run the row-tiled layouts (the router's N = E GEMM), not TN (its stages load B in 128-column halves)
        Assert.IsNull(GemmConfig.Wgmma(64, 6).Problem(GemmMath.WgmmaSm90a, GroupedGemmLayout.ForwardNT));
        Assert.IsNull(GemmConfig.Wgmma(64, 6).Problem(GemmMath.WgmmaSm90a, GroupedGemmLayout.BackwardDataNN));
        StringAssert.Contains(GemmConfig.Wgmma(64, 6).Problem(GemmMath.WgmmaSm90a, GroupedGemmLayout.BackwardWeightTN) ?? "(accepted)", "128 or 256 columns wide");
        CollectionAssert.AreEqual(new[] { "sm90a_128x128x64_s4_w12", "sm90a_128x128x64_s5_w12", "sm90a_128x256x64_s3_w12" },
            GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16).Select(c => c.Name).ToArray());
        Assert.AreEqual(GemmConfig.Wgmma(256, 3), GroupedGemmSm90aSpecs.Default(GroupedGemmLayout.BackwardWeightTN, 2048));
        Assert.AreEqual(GemmConfig.Wgmma(128, 4), GroupedGemmSm90aSpecs.Default(GroupedGemmLayout.BackwardWeightTN, 136));
    }

    [TestMethod]
    public void TnSpec_ReadsBothOperandsTransposedByCpAsync()
    {
        GroupedGemmSpec spec = GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16, GemmConfig.Wgmma(256, 3));
        Assert.AreEqual("grouped_gemm_tn_sm90a_bf16_wgmma_128x256x64_s3", spec.EntryName);
        Assert.AreEqual(typeof(GroupedGemmWeightSm90aArgs), spec.ArgsType, "dW's tensor map, then the sm_80 TN parameters");
        // 1024 slack + 3 x (16 KiB A + 32 KiB B) + 2 staging tiles of 64 x 512 B + 6 mbarriers + the 2 x 128-entry row table
        Assert.AreEqual(1024 + 3 * (16384 + 32768) + 2 * 64 * 512 + 48 + 2048, spec.DynamicSharedBytes);
        string ptx = spec.SpecialisedPtx();
        StringAssert.Contains(ptx, ".entry grouped_gemm_tn_sm90a_bf16_wgmma_128x256x64_s3(");
        Assert.AreEqual(2 * 32, System.Text.RegularExpressions.Regex.Matches(ptx, @"st\.shared\.b32 \[st_frag").Count, "32 blocks x 2 rows staged");
        Assert.AreEqual(4, System.Text.RegularExpressions.Regex.Matches(ptx, @"desc_a, desc_b, 1, 1, 1, 1, 1;").Count, "trans-a 1, trans-b 1");
        StringAssert.Contains(ptx, "or.b64 desc_a, desc_a, 0x4000004002000000;");   // MN-major A: LBO 8192, SBO 1024
        StringAssert.Contains(ptx, "or.b64 desc_b, desc_b, 0x4000004002000000;");
        StringAssert.Contains(ptx, "add.u64 desc_a, desc_a, 128;");                 // k16 step: +16 rows of 128 B
        // the thread's 8 stage rows (8 apart, 1024 B) x BN/128 halves (16384 B) of B, 8 rows of A, every chunk once
        CollectionAssert.AreEquivalent(Enumerable.Range(0, 8).SelectMany(j => new[] { 1024 * j, 1024 * j + 16384 }).ToArray(),
            System.Text.RegularExpressions.Regex.Matches(ptx, @"cp\.async\.cg\.shared\.global \[stage_b\+(\d+)\]").Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToArray(), "B chunks");
        CollectionAssert.AreEquivalent(Enumerable.Range(0, 8).Select(j => 1024 * j).ToArray(),
            System.Text.RegularExpressions.Regex.Matches(ptx, @"cp\.async\.cg\.shared\.global \[stage_a\+(\d+)\]").Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToArray(), "A chunks");
        // the 16 table loads come before the first copy (their latencies overlap)
        int firstCopy = ptx.IndexOf("cp.async.cg.shared.global [stage_a+0]", StringComparison.Ordinal);
        Assert.AreEqual(16, System.Text.RegularExpressions.Regex.Matches(ptx[..firstCopy], @"ld\.shared\.s64 t_[ab]\d, \[tab_rd").Count, "table loads first");
        Assert.IsFalse(ptx.Contains("cp.async.bulk.tensor.3d.shared::cluster.global", StringComparison.Ordinal), "no TMA loads: both operands are gathered rows");
    }

    /// <summary>The TN epilogue stages the whole 64 x BN tile of a consumer in the image its 128B-swizzled TMA stores read
    /// (box b = 128 B of columns at 8192 b, row r at 128 r, 16-byte chunk j at (j ^ (r &amp; 7)) * 16): simulated for every
    /// thread of a warp, each fragment element lands where that image puts it, every element of the warp's 16 rows once,
    /// and every dtype store instruction of the warp hits 32 distinct banks (the f32 output's 8-byte stores at most 2 words
    /// per bank in a half-warp phase).</summary>
    [TestMethod]
    [DataRow(128, 5, false)]
    [DataRow(256, 3, false)]
    [DataRow(128, 4, true)]
    public void TnEpilogue_StagesTheSwizzledImageConflictFree(int blockN, int stages, bool float32Output)
    {
        GroupedGemmSpec spec = GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16, GemmConfig.Wgmma(blockN, stages),
            float32Output: float32Output);
        int es = float32Output ? 4 : 2, boxColumns = 128 / es;
        Assert.AreEqual(64 * blockN * es, int.Parse(spec.Values["STG_BYTES"], System.Globalization.CultureInfo.InvariantCulture));
        Assert.AreEqual(0, int.Parse(spec.Values["STG_OFF"], System.Globalization.CultureInfo.InvariantCulture) % 1024, "staging 1024-aligned (the swizzle atom)");
        string stage = spec.Values["EPI_STAGE"];
        var chunkLine = new System.Text.RegularExpressions.Regex(@"xor\.b32 st_frag, swz, (\d+);");
        var store = new System.Text.RegularExpressions.Regex(float32Output
            ? @"st\.shared\.v2\.f32 \[st_frag\+(\d+)\], \{acc(\d+), acc\d+\}"
            : @"cvt\.rn\.bf16x2\.f32 o, acc\d+, acc(?<lo>\d+); st\.shared\.b32 \[st_frag\+(?<at>\d+)\]");
        var placed = new HashSet<int>();
        int chunk = -1, stores = 0;
        foreach (string line in stage.Split('\n'))
        {
            if (chunkLine.Match(line) is { Success: true } c) chunk = int.Parse(c.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            foreach (System.Text.RegularExpressions.Match m in store.Matches(line))
            {
                int at = int.Parse(float32Output ? m.Groups[1].Value : m.Groups["at"].Value, System.Globalization.CultureInfo.InvariantCulture);
                int acc = int.Parse(float32Output ? m.Groups[2].Value : m.Groups["lo"].Value, System.Globalization.CultureInfo.InvariantCulture);
                int j = acc / 4, half = acc % 4 / 2;   // acc[4j + 2 half] = D[g + 8 half][8j + 2q]
                stores++;
                var banks = new List<int>[2] { new(), new() };
                for (int lane = 0; lane < 32; lane++)
                {
                    int g = lane / 4, q = lane % 4, pair = 2 * q * es;   // the kernel's st_row and swz (warp 0)
                    int address = g * 128 + (pair & 15) + ((chunk ^ ((((pair >> 4) ^ g)) << 4))) + at;
                    int row = g + 8 * half, column = 8 * j + 2 * q;
                    int expected = column / boxColumns * 8192 + row * 128 + ((column % boxColumns * es / 16) ^ (row & 7)) * 16 + column * es % 16;
                    Assert.AreEqual(expected, address, $"D[{row}][{column}] (acc{acc}, lane {lane})");
                    Assert.IsTrue(placed.Add(expected), $"D[{row}][{column}] stored twice");
                    for (int word = 0; word < es / 2; word++) banks[float32Output ? lane / 16 : 0].Add((address / 4 + word) % 32);
                }
                // dtype: every bank once; f32 (a half-warp phase is rows g = 0..3, which share chunk pairs under the
                // swizzle): at most 2 words per bank
                foreach (List<int> phase in banks.Where(p => p.Count > 0))
                    Assert.IsTrue(phase.GroupBy(bank => bank).Max(b => b.Count()) <= (float32Output ? 2 : 1), $"acc{acc}: bank conflict");
            }
        }
        Assert.AreEqual(2 * blockN / 8, stores, "two rows of every 8-column block");
        Assert.AreEqual(16 * blockN / 2, placed.Count, "the warp's 16 rows, every column pair once");
    }

    /// <summary>The TN epilogue overlaps the next tile: each warp waits only for its own previous TMA stores (lane 0's
    /// wait_group.read before the staging stores), syncs within the warp (no warpgroup barrier in the consumer), fences
    /// the async proxy, then lane 0 stores the warp's 16 rows of each box with one TMA store through dW's map (BN/C of
    /// them: C = 128 B of columns); the consumer's end waits for its last stores. A tile of an expert without rows stores
    /// its zeros from registers instead (no staging, nothing to wait for).</summary>
    [TestMethod]
    [DataRow(256, 3, false, 4)]
    [DataRow(128, 4, false, 2)]
    [DataRow(128, 4, true, 4)]
    public void TnEpilogue_TmaStoresOverlapTheNextTile(int blockN, int stages, bool float32Output, int boxes)
    {
        GroupedGemmSpec spec = GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16, GemmConfig.Wgmma(blockN, stages),
            float32Output: float32Output);
        string ptx = spec.SpecialisedPtx();
        // instructions only (a line's first token, after an optional guard), not the header's comments
        int Count(string s) => System.Text.RegularExpressions.Regex.Matches(ptx, @"(?m)^\s*(@!?\w+\s+)?" + System.Text.RegularExpressions.Regex.Escape(s)).Count;
        int At(string s) { int i = ptx.IndexOf(s, StringComparison.Ordinal); Assert.IsTrue(i >= 0, s); return i; }
        Assert.AreEqual(2, Count("bar.sync "), "only ring_init's CTA barrier and the producer's bar.sync 1: no warpgroup barrier in the epilogue");
        const string tmaStore = "cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [dw_map, {col, r_n, e_cur}], [cp_rd+";
        Assert.AreEqual(boxes, System.Text.RegularExpressions.Regex.Matches(ptx, System.Text.RegularExpressions.Regex.Escape("@p_copier " + tmaStore)).Count, "one TMA store per box");
        for (int b = 0; b < boxes; b++)
            StringAssert.Contains(ptx, $"add.s32 col, n0, {b * 128 / (float32Output ? 4 : 2)}; @p_copier {tmaStore}{8192 * b}];");
        StringAssert.Contains(ptx, "setp.eq.u32 p_copier, lane, 0;");
        (int kLoopEnd, int commit) = Sm90aStagedEpiloguePlanTests.AssertBulkCopiesOverlapTheNextTile(ptx, "@p_copier", "cp.async.bulk.tensor.3d.global.shared::cta.bulk_group");
        // dW leaves through the TMA stores, but for the tiles of experts without rows: one 16-byte zero store per lane
        // and row, after the staged path (C_ZERO), entered before the k-loop
        Assert.AreEqual(1, Count("@p st.global.v4.b32 [cp_out], {zero, zero, zero, zero};"), "the zero tiles' store");
        Assert.AreEqual(1, Count("st.global"), "no other global store");
        int zeroBranch = At("@p bra C_ZERO;"), zeroPath = At("\nC_ZERO:\n");
        Assert.IsTrue(zeroBranch < kLoopEnd && commit < zeroPath, "an expert without rows skips the k-loop and the staging");
    }

    [TestMethod]
    public void TnNullConfig_TakesSm90aOnceItsTilesFillTheSms()
    {
        const int es = 2;
        GemmMath MathOf(int experts, int n, int k, bool sm90a) => GroupedGemm.Plan(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16, null, (9, 0), 132,
            new DeviceRange(0x100000, (long)Rows.TotalRows * n * es), new DeviceRange(0x4000000, (long)Rows.TotalRows * k * es),
            new DeviceRange(0x80000000, (long)experts * n * k * es), DeviceRange.Null,
            Rows with { Experts = experts }, n, k, 0, 0, sm90a)!.Value.Spec.Math;
        Assert.AreEqual(GemmMath.WgmmaSm90a, MathOf(8, 1536, 2048, sm90a: true));   // 8 x 12 x 8 tiles
        Assert.AreEqual(GemmMath.MmaSm80, MathOf(8, 1536, 2048, sm90a: false));
        Assert.AreEqual(GemmMath.MmaSm80, MathOf(1, 128, 2048, sm90a: true), "8 tiles of 128x256 leave most SMs idle");
    }

    /// <summary>The row-tiled producer gathers A in batches of 4 rows (16 apart: 128 B of table, 2048 B of stage): the
    /// batch's 4 table loads come before its first copy, each copy zero-fills through ignore-src, no B chunks (W by TMA).</summary>
    [TestMethod]
    public void RowsSpec_GathersARowsInBatchesOfFour()
    {
        string ptx = GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, GemmConfig.Wgmma(256, 4)).SpecialisedPtx();
        CollectionAssert.AreEquivalent(new[] { 0, 2048, 4096, 6144 },
            System.Text.RegularExpressions.Regex.Matches(ptx, @"cp\.async\.cg\.shared\.global \[ld_dst\+(\d+)\], \[ld_src\], 16, p;").Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToArray(), "A chunks");
        int firstCopy = ptx.IndexOf("cp.async.cg.shared.global [ld_dst+0]", StringComparison.Ordinal);
        CollectionAssert.AreEqual(new[] { "0", "128", "256", "384" },
            System.Text.RegularExpressions.Regex.Matches(ptx[..firstCopy], @"ld\.shared\.s64 t_a\d, \[tab_rd\+(\d+)\]").Select(m => m.Groups[1].Value).ToArray(), "table loads first");
        Assert.IsFalse(ptx.Contains("[stage_b+", StringComparison.Ordinal), "no B chunks: W comes by TMA");
    }

    /// <summary>The consumer fences the async proxy after each full wait only where the stage may hold cp.async rows: the
    /// rows kernel branches around it when A came by TMA too (p_a_tma), the TN kernel and dSwiGLU (A never by TMA) always fence.</summary>
    [TestMethod]
    public void ConsumerFence_IsSkippedOnlyWhenBothOperandsComeByTma()
    {
        const string skip = "@a_tma bra.uni C_FENCED;", fence = "fence.proxy.async.shared::cta;      // the stage's cp.async writes";
        foreach (GroupedGemmEpilogue epilogue in new[] { GroupedGemmEpilogue.Plain, GroupedGemmEpilogue.SwiGlu })
        {
            string rows = GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, GemmConfig.Wgmma(256, 4), epilogue).SpecialisedPtx();
            int wait = rows.IndexOf("@!p_ready bra C_WAIT_FULL;", rows.IndexOf("CONSUMER:", StringComparison.Ordinal), StringComparison.Ordinal);
            int branch = rows.IndexOf(skip, StringComparison.Ordinal), at = rows.IndexOf(fence, StringComparison.Ordinal);
            Assert.IsTrue(wait > 0 && wait < branch && branch < at && at < rows.IndexOf("C_FENCED:", StringComparison.Ordinal)
                && rows.IndexOf("C_FENCED:", StringComparison.Ordinal) < rows.IndexOf("wgmma.fence.sync.aligned;", at, StringComparison.Ordinal),
                $"{epilogue}: full wait < skip < fence < C_FENCED < wgmma");
        }
        string dswiglu = GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardDataNN, ScalarType.BFloat16, GemmConfig.Wgmma(256, 4), GroupedGemmEpilogue.DSwiGlu).SpecialisedPtx();
        string tn = GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16, GemmConfig.Wgmma(256, 3)).SpecialisedPtx();
        foreach (string ptx in new[] { dswiglu, tn })
        {
            Assert.IsFalse(ptx.Contains(skip, StringComparison.Ordinal), "no TMA A: always fenced");
            StringAssert.Contains(ptx, fence);
        }
    }

    [TestMethod]
    public void NnSpec_ReadsWNMajorThroughTheTransposeBit()
    {
        string ptx = GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardDataNN, ScalarType.BFloat16, GemmConfig.Wgmma(256, 4)).SpecialisedPtx();
        StringAssert.Contains(ptx, ".entry grouped_gemm_nn_sm90a_bf16_wgmma_128x256x64_s4(");
        StringAssert.Contains(ptx, "desc_a, desc_b, 1, 1, 1, 0, 1;");           // trans-b 1
        StringAssert.Contains(ptx, "or.b64 desc_b, desc_b, 0x4000004002000000;");  // LBO 8192, SBO 1024
        Assert.AreEqual(4, System.Text.RegularExpressions.Regex.Matches(ptx, @"\[w_map, \{b_col, k_coord, e_cur\}\]").Count, "BN/64 boxes per stage");
    }

    [TestMethod]
    [DataRow(GroupedGemmLayout.ForwardNT, GroupedGemmEpilogue.Plain, 1, DisplayName = "NT: one (64, BN/2) box per rank")]
    [DataRow(GroupedGemmLayout.BackwardDataNN, GroupedGemmEpilogue.Plain, 2, DisplayName = "NN: BN/128 of the BN/64 boxes per rank")]
    [DataRow(GroupedGemmLayout.ForwardNT, GroupedGemmEpilogue.SwiGlu, 1, DisplayName = "SwiGLU: the gate or the up box")]
    public void ClusterSpec_MulticastsHalfTheWStageAndPairsTheMTiles(GroupedGemmLayout layout, GroupedGemmEpilogue epilogue, int boxesPerRank)
    {
        GemmConfig c2 = GemmConfig.Wgmma(256, 4, cluster: 2);
        Assert.AreEqual("sm90a_128x256x64_s4_w12_c2", c2.Name);
        GroupedGemmSpec spec = GroupedGemmSpecs.Create(layout, ScalarType.BFloat16, c2, epilogue);
        StringAssert.EndsWith(spec.EntryName, "_wgmma_128x256x64_s4_c2");
        Assert.AreEqual(GroupedGemmSpecs.Create(layout, ScalarType.BFloat16, GemmConfig.Wgmma(256, 4), epilogue).DynamicSharedBytes,
            spec.DynamicSharedBytes, "the same shared layout as the single-CTA tile");
        string ptx = spec.SpecialisedPtx();
        StringAssert.Contains(ptx, ".reqnctapercluster 2, 1, 1");
        Assert.AreEqual(boxesPerRank, System.Text.RegularExpressions.Regex.Matches(ptx, @"\.multicast::cluster \[b_dst\], \[w_map, \{[a-z_0-9, ]+\}\], \[bar\], cta_mask;").Count);
        StringAssert.Contains(ptx, "mbarrier.init.shared::cta.b64 [bar], 8;");         // this CTA's consumer warps arrive...
        Assert.AreEqual(2, System.Text.RegularExpressions.Regex.Matches(ptx, @"@p(_leader)? mbarrier\.arrive\.expect_tx\.shared::cta\.b64 _, \[bar\], 1;").Count,
            "... each expecting one tx unit");
        Assert.AreEqual(2, System.Text.RegularExpressions.Regex.Matches(ptx, @"@p(_leader)? mbarrier\.complete_tx\.relaxed\.cluster\.shared::cluster\.b64 \[peer_bar\], 1;").Count,
            "the peer's warps complete them (relaxed: no fence in the k-loop)");
        Assert.IsFalse(ptx.Contains("mbarrier.arrive.release.cluster", StringComparison.Ordinal), "a remote release arrive puts MEMBAR.ALL.GPU in the k-loop");
        Assert.AreEqual(2, System.Text.RegularExpressions.Regex.Matches(ptx, @"add\.u32 m0, m0, rank_m;").Count, "producer and consumers");
        StringAssert.Contains(ptx, "mul.lo.u32 m0, m_tile, 256;");                      // the walk's unit: a pair of m-tiles
        StringAssert.Contains(ptx, "mov.u32 tile, %clusterid.x;");
        Assert.AreEqual(3, System.Text.RegularExpressions.Regex.Matches(ptx, @"barrier\.cluster\.wait\.acquire\.aligned;").Count, "after the init, at both exits");

        string single = System.Text.RegularExpressions.Regex.Replace(   // the code without the comments (the header describes both modes)
            GroupedGemmSpecs.Create(layout, ScalarType.BFloat16, GemmConfig.Wgmma(256, 4), epilogue).SpecialisedPtx(), "//[^\n]*", "");
        foreach (string clusterOnly in new[] { "reqnctapercluster", "multicast", "barrier.cluster", "shared::cluster.b64", "expect_tx.shared::cta.b64 _, [bar], 1", "%clusterid" })
            Assert.IsFalse(single.Contains(clusterOnly, StringComparison.Ordinal), clusterOnly);
        StringAssert.Contains(single, "mbarrier.init.shared::cta.b64 [bar], 8;");
    }

    [TestMethod]
    public void ClusterConfig_OnlyForTheRowTiledHopperKernels()
    {
        Assert.IsNull(GemmConfig.Wgmma(128, 4, cluster: 2).Problem(GemmMath.WgmmaSm90a, GroupedGemmLayout.BackwardDataNN));
        StringAssert.Contains(GemmConfig.Wgmma(128, 4, cluster: 2).Problem(GemmMath.WgmmaSm90a, GroupedGemmLayout.BackwardWeightTN) ?? "(accepted)", "without clusters");
        StringAssert.Contains(GemmConfig.Wgmma(128, 4, cluster: 3).Problem(GemmMath.WgmmaSm90a) ?? "(accepted)", "Cluster must be 1 or 2");
        StringAssert.Contains((GemmConfig.Mma(128, 128, 4) with { Cluster = 2 }).Problem(GemmMath.MmaSm80) ?? "(accepted)", "only the sm_90a tiles");
        Assert.IsTrue(GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16).Any(c => c.Cluster == 2));
        Assert.IsFalse(GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16).Any(c => c.Cluster == 2));
    }

    [TestMethod]
    public void Spec_SharedLayoutAndEntry()
    {
        GroupedGemmSpec spec = GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.Float16, GemmConfig.Wgmma(256, 3));
        Assert.AreEqual("grouped_gemm_nt_sm90a_fp16_wgmma_128x256x64_s3", spec.EntryName);
        // 1024 slack + 3 x (16 KiB A + 32 KiB W) + 6 mbarriers + the 128-row table
        Assert.AreEqual(1024 + 3 * (16384 + 32768) + 48 + 1024, spec.DynamicSharedBytes);
        Assert.AreEqual(typeof(GroupedGemmRowsSm90aArgs), spec.ArgsType);
        string ptx = spec.SpecialisedPtx();
        StringAssert.Contains(ptx, ".target sm_90a");
        StringAssert.Contains(ptx, "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16");
        StringAssert.Contains(ptx, "acc127}");
    }
}
