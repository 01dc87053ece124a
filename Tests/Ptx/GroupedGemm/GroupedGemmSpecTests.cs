using MoeNative.Ptx;
using MoeNative.Interop;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>CPU checks of the grouped-GEMM specialisations: candidates, configuration validation, template values,
/// args structs vs .entry, shared-memory budgets.</summary>
[TestClass]
public sealed class GroupedGemmSpecTests
{
    public static IEnumerable<object[]> Specs() =>
        GroupedGemmSpecs.All().Select(s => new object[] { s.Layout, s.DType, s.Config.Name, s.Epilogue, s.Float32Output });

    private static GroupedGemmSpec Spec(GroupedGemmLayout layout, ScalarType dtype, string configName, GroupedGemmEpilogue epilogue, bool float32Output) =>
        GroupedGemmSpecs.All().Single(s => s.Layout == layout && s.DType == dtype && s.Config.Name == configName && s.Epilogue == epilogue
            && s.Float32Output == float32Output);

    [TestMethod]
    [DataRow(ScalarType.BFloat16)]
    [DataRow(ScalarType.Float16)]
    public void TensorCoreDtypes_HaveAtLeastThreeValidCandidates(ScalarType dtype)
    {
        foreach (GroupedGemmLayout layout in Enum.GetValues<GroupedGemmLayout>())
        {
            IReadOnlyList<GemmConfig> candidates = GroupedGemm.Candidates(layout, dtype, (9, 0));
            Assert.IsGreaterThanOrEqualTo(3, candidates.Count, $"{layout} {dtype}");
            Assert.AreEqual(candidates.Count, candidates.Distinct().Count(), "candidates are distinct");
            foreach (GemmConfig c in candidates)
                Assert.IsNull(c.Problem(GemmMath.MmaSm80), $"{c.Name}: {c.Problem(GemmMath.MmaSm80)}");
        }
    }

    [TestMethod]
    public void Fp32_HasTheSingleFfmaCandidate()
    {
        foreach (GroupedGemmLayout layout in Enum.GetValues<GroupedGemmLayout>())
        {
            IReadOnlyList<GemmConfig> candidates = GroupedGemm.Candidates(layout, ScalarType.Float32, (8, 0));
            Assert.HasCount(1, candidates);
            Assert.AreEqual(GemmConfig.Ffma64x64, candidates[0]);
        }
    }

    [TestMethod]
    public void OlderThanSm80_IsNotSupported()
    {
        var ex = Assert.ThrowsExactly<NotSupportedException>(() => GroupedGemm.Candidates(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, (7, 5)));
        StringAssert.Contains(ex.Message, "8.0");
    }

    [TestMethod]
    [DataRow(128, 128, 16, 4, 8, "BlockK must be 32")]
    [DataRow(96, 128, 32, 4, 6, "BlockM must be 64 or 128")]
    [DataRow(128, 256, 32, 4, 16, "BlockN must be 32, 64 or 128")]
    [DataRow(128, 128, 32, 4, 4, "Warps must be (BlockM/64)*(BlockN/32) = 8")]
    [DataRow(128, 128, 32, 1, 8, "Stages must be in 2..8")]
    [DataRow(64, 64, 32, 9, 2, "Stages must be in 2..8")]
    public void InvalidTensorCoreConfig_IsRejectedWithReason(int bm, int bn, int bk, int stages, int warps, string reason)
    {
        var cfg = new GemmConfig(bm, bn, bk, stages, warps);
        StringAssert.Contains(cfg.Problem(GemmMath.MmaSm80) ?? "(accepted)", reason);
        var ex = Assert.ThrowsExactly<ArgumentException>(() => GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, cfg));
        Assert.AreEqual("config", ex.ParamName);
        StringAssert.Contains(ex.Message, reason);
    }

    [TestMethod]
    [DataRow(GroupedGemmLayout.ForwardNT)]
    [DataRow(GroupedGemmLayout.BackwardDataNN)]
    [DataRow(GroupedGemmLayout.BackwardWeightTN)]
    public void WideBlockK_IsAcceptedAndOfferedByEveryLayout(GroupedGemmLayout layout)
    {
        GemmConfig wide = GemmConfig.Mma(64, 64, 4, GemmConfig.MmaBlockKWide);
        Assert.IsNull(GroupedGemmSpecs.Problem(layout, ScalarType.BFloat16, wide));
        GroupedGemmSpec spec = GroupedGemmSpecs.Create(layout, ScalarType.BFloat16, wide);
        Assert.AreEqual(64, spec.Config.BlockK);
        Assert.AreEqual("64", spec.Values["BK"]);
        if (layout != GroupedGemmLayout.BackwardWeightTN) Assert.AreEqual("144", spec.Values["KPITCH"]);
        else Assert.AreEqual((64 * (2 * 64 + 16)).ToString(System.Globalization.CultureInfo.InvariantCulture), spec.Values["A_STAGE_BYTES"]);
        StringAssert.EndsWith(spec.EntryName, "_mma_64x64x64_s4");
        Assert.Contains(wide, GroupedGemm.Candidates(layout, ScalarType.BFloat16, (9, 0)));
        Assert.Contains(wide, GroupedGemm.Candidates(layout, ScalarType.Float16, (8, 0)));
        Assert.DoesNotContain(wide, GroupedGemm.Candidates(layout, ScalarType.Float32, (9, 0)));
    }

    [TestMethod]
    public void FfmaConfig_SelectsTheSimtKernelForEveryDtype_AndMmaConfigsAreRejectedForFp32()
    {
        foreach (ScalarType dtype in new[] { ScalarType.BFloat16, ScalarType.Float16, ScalarType.Float32 })
        {
            GroupedGemmSpec spec = GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, dtype, GemmConfig.Ffma64x64);
            Assert.AreEqual(GemmMath.Ffma, spec.Math);
            Assert.AreEqual(0, spec.DynamicSharedBytes);
            StringAssert.Contains(spec.EntryName, $"_{dtype.ShortName()}_ffma_64x64x16");
        }
        var ex = Assert.ThrowsExactly<ArgumentException>(() =>
            GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardWeightTN, ScalarType.Float32, GemmConfig.Mma(128, 128, 4)));
        StringAssert.Contains(ex.Message, "single configuration");
    }

    [TestMethod]
    [DynamicData(nameof(Specs))]
    public void Specialisation_MatchesArgsStruct_AndNamesArchDtypeLayoutTile(GroupedGemmLayout layout, ScalarType dtype, string configName,
        GroupedGemmEpilogue epilogue, bool float32Output)
    {
        GroupedGemmSpec spec = Spec(layout, dtype, configName, epilogue, float32Output);
        string ptx = spec.SpecialisedPtx(); // strict: throws on a missing or unused template value
        Assert.IsFalse(ptx.Contains("{{", StringComparison.Ordinal), "no placeholder left");
        IReadOnlyList<PtxSignature> entries = PtxSignature.ParseAll(ptx);
        Assert.HasCount(1, entries);
        Assert.AreEqual(spec.EntryName, entries[0].EntryName);
        PtxSignature cs = PtxSignature.FromArgs(spec.ArgsType);
        Assert.IsTrue(entries[0].TypesMatch(cs), entries[0].DescribeMismatch(cs));
        string tag = GroupedGemmSpecs.Tag(layout);
        string arch = spec.Math == GemmMath.WgmmaSm90a ? "sm90a" : "sm80";
        string fused = epilogue switch { GroupedGemmEpilogue.SwiGlu => "_swiglu", GroupedGemmEpilogue.DSwiGlu => "_dswiglu", _ => "" };
        StringAssert.StartsWith(spec.EntryName, $"grouped_gemm_{tag}{fused}_{arch}_{dtype.ShortName()}_");
        StringAssert.Contains(spec.EntryName, $"{spec.Config.BlockM}x{spec.Config.BlockN}x{spec.Config.BlockK}");
        Assert.AreEqual(float32Output, spec.EntryName.EndsWith("_f32out", StringComparison.Ordinal), spec.EntryName);
        if (spec.Math == GemmMath.MmaSm80)
        {
            StringAssert.Contains(ptx, $".maxntid {spec.Config.Threads}, 1, 1");
            StringAssert.Contains(ptx, dtype == ScalarType.BFloat16 ? ".f32.bf16.bf16.f32" : ".f32.f16.f16.f32");
        }
    }

    [TestMethod]
    [DynamicData(nameof(Specs))]
    public void SharedMemory_FitsA100AndH100_AndCoversPipelineAndCTile(GroupedGemmLayout layout, ScalarType dtype, string configName,
        GroupedGemmEpilogue epilogue, bool float32Output)
    {
        GroupedGemmSpec spec = Spec(layout, dtype, configName, epilogue, float32Output);
        if (spec.Math == GemmMath.WgmmaSm90a)
        {
            // Hopper only (227 KiB opt-in), with room for the 4*E m_sizes table; covers 1024 B of alignment slack
            // plus every A and W stage
            Assert.IsLessThanOrEqualTo(227 * 1024 - 4 * 1024, spec.DynamicSharedBytes, spec.ModuleName);
            Assert.IsGreaterThanOrEqualTo(1024L + spec.Config.Stages * 128L * (spec.Config.BlockM + spec.Config.BlockN), (long)spec.DynamicSharedBytes);
            return;
        }
        const int a100OptIn = 166912; // 163 KiB: the smaller of the two opt-in limits
        Assert.IsLessThanOrEqualTo(a100OptIn, spec.DynamicSharedBytes, spec.ModuleName);
        if (spec.Math == GemmMath.Ffma)
        {
            Assert.AreEqual(0, spec.DynamicSharedBytes);
            return;
        }
        GemmConfig c = spec.Config;
        long cTile = (long)c.BlockM * (c.BlockN * 4 + 32);
        long stage = layout switch
        {
            GroupedGemmLayout.ForwardNT => (c.BlockM + c.BlockN) * (2L * c.BlockK + 16),
            GroupedGemmLayout.BackwardDataNN => c.BlockM * (2L * c.BlockK + 16) + c.BlockK * (c.BlockN * 2L + 16),
            _ => c.BlockK * (c.BlockM * 2L + 16 + c.BlockN * 2 + 16),
        };
        Assert.IsGreaterThanOrEqualTo(Math.Max(cTile, c.Stages * stage), (long)spec.DynamicSharedBytes, spec.ModuleName);
    }

    [TestMethod]
    public void ModuleNames_AreUnique_AndInTheCatalog()
    {
        string[] names = GroupedGemmSpecs.All().Select(s => s.ModuleName).ToArray();
        Assert.AreEqual(names.Length, names.Distinct().Count());
        HashSet<string> catalog = PtxCatalog.All().Select(m => m.ModuleName).ToHashSet();
        foreach (string name in names) Assert.Contains(name, catalog);
        // per layout: fp32 FFMA + for bf16 and fp16 the FFMA fallback, every sm_80 tensor-core candidate and every sm_90a
        // tile, plain and with each fused epilogue of the layout (dSwiGLU not on the staged tiles: it runs them as their
        // register twins), and (TN) every tile with the f32 output
        Assert.AreEqual(Enum.GetValues<GroupedGemmLayout>().Sum(l => 1 + 2 * (1 + GroupedGemmSpecs.CandidateConfigs(l, ScalarType.BFloat16).Count
            + GroupedGemmSm90aSpecs.Candidates(l, ScalarType.BFloat16).Sum(c => 1 + GroupedGemmSm90aSpecs.FusedEpilogues(l)
                .Count(e => !(c.StagedEpilogue && e == GroupedGemmEpilogue.DSwiGlu)))
            + GroupedGemmSpecs.Float32OutputCandidates(l, ScalarType.BFloat16, sm90a: true).Count)), names.Length);
        Assert.AreEqual(2 * 11, names.Count(n => n.EndsWith("_f32out", StringComparison.Ordinal))); // 10 sm_80 + 1 sm_90a TN tiles, bf16 and fp16
    }

    [TestMethod]
    [DataRow(new[] { 0, 1, 65 }, 2, 136, 200)]
    [DataRow(new[] { 130, 0, 1, 0, 17, 64, 0, 4 }, 8, 200, 72)]
    [DataRow(new[] { 300, 129, 0 }, 3, 264, 136)]
    [DataRow(new[] { 0, 0, 0 }, 1, 64, 64)]
    public void EstimatedTiles_BoundsTheExactTileCount(int[] mSizes, int topK, int n, int k)
    {
        var rows = new GroupedRows(0x1000, 0x2000, mSizes.Sum(), mSizes.Length, topK);
        foreach (ScalarType dtype in new[] { ScalarType.BFloat16, ScalarType.Float32 })
            foreach (GemmConfig cfg in GroupedGemmSpecs.CandidateConfigs(GroupedGemmLayout.ForwardNT, dtype))
            {
                long exactNt = mSizes.Sum(m => (long)((m + cfg.BlockM - 1) / cfg.BlockM)) * ((n + cfg.BlockN - 1) / cfg.BlockN);
                long exactNn = mSizes.Sum(m => (long)((m + cfg.BlockM - 1) / cfg.BlockM)) * ((k + cfg.BlockN - 1) / cfg.BlockN);
                long exactTn = (long)mSizes.Length * ((n + cfg.BlockM - 1) / cfg.BlockM) * ((k + cfg.BlockN - 1) / cfg.BlockN);
                Assert.IsGreaterThanOrEqualTo(exactNt, GroupedGemm.EstimatedTiles(GroupedGemmLayout.ForwardNT, cfg, rows, n, k), cfg.Name);
                Assert.IsGreaterThanOrEqualTo(exactNn, GroupedGemm.EstimatedTiles(GroupedGemmLayout.BackwardDataNN, cfg, rows, n, k), cfg.Name);
                Assert.AreEqual(exactTn, GroupedGemm.EstimatedTiles(GroupedGemmLayout.BackwardWeightTN, cfg, rows, n, k), cfg.Name);
            }
    }
}
