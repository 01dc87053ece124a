using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>The fused-epilogue entry checks and specialisations, on the CPU (planning only, fake pointers).</summary>
[TestClass]
public sealed class Sm90aFusedEpiloguePlanTests
{
    private static readonly GroupedRows Rows = new(0x80000, 0x90000, 1024, 8, 2);
    private const int I = 768, H = 2048, Es = 2;
    private const ulong X = 0x1000000, W = 0x10000000, Act = 0x40000000, G1 = 0x50000000;

    private static GroupedGemm.GemmPlan? SwiGlu(GemmConfig? cfg, bool sm90a = true, int inter = I, long actBytes = -1,
        ulong g1 = G1, int cMode = 0, (int, int)? cc = null)
    {
        int n = 2 * inter;
        return GroupedGemm.Plan(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, cfg, cc ?? (9, 0), 132,
            new DeviceRange(X, (long)Rows.TotalRows * H * Es), new DeviceRange(W, (long)Rows.Experts * n * H * Es),
            new DeviceRange(Act, actBytes >= 0 ? actBytes : (long)Rows.TotalRows * inter * Es), DeviceRange.Null, Rows, n, H, 0, cMode, sm90a,
            GroupedGemmEpilogue.SwiGlu, g1 == 0 ? DeviceRange.Null : new DeviceRange(g1, (long)Rows.TotalRows * n * Es));
    }

    private static GroupedGemm.GemmPlan? DSwiGlu(GemmConfig? cfg, DeviceRange g1)
    {
        return GroupedGemm.Plan(GroupedGemmLayout.BackwardDataNN, ScalarType.BFloat16, cfg, (9, 0), 132,
            new DeviceRange(X, (long)Rows.TotalRows * H * Es), new DeviceRange(W, (long)Rows.Experts * H * I * Es),
            new DeviceRange(Act, (long)Rows.TotalRows * 2 * I * Es), DeviceRange.Null, Rows, H, I, 0, 0, true, GroupedGemmEpilogue.DSwiGlu, g1);
    }

    [TestMethod]
    [DataRow(768, true)]
    [DataRow(8, true)]
    [DataRow(28, false, DisplayName = "I = 28 (a fuzz shape): the block runs the unfused pair")]
    [DataRow(4, false)]
    [DataRow(0, false)]
    public void FusedEpiloguesFit_OnlyMultiplesOfEight(int intermediate, bool fits) =>
        Assert.AreEqual(fits, GroupedGemm.FusedEpiloguesFit(intermediate));

    [TestMethod]
    public void SwiGlu_NullConfigOnSm90a_TakesTheSm90aDefault_WithTheSwiGluSpec()
    {
        GroupedGemmSpec spec = SwiGlu(null)!.Value.Spec;
        Assert.AreEqual(GemmMath.WgmmaSm90a, spec.Math);
        Assert.AreEqual(GroupedGemmEpilogue.SwiGlu, spec.Epilogue);
        Assert.AreEqual(GroupedGemmSm90aSpecs.Default(GroupedGemmLayout.ForwardNT, 2 * I), spec.Config);
        Assert.IsNotNull(SwiGlu(null, g1: 0), "inference: G1 may be null");
    }

    [TestMethod]
    public void SwiGlu_Sm80ConfigOrNoSm90a_IsRejectedBeforeLaunch()
    {
        var ex = Assert.ThrowsExactly<ArgumentException>(() => SwiGlu(GemmConfig.Mma(128, 128, 4)));
        Assert.AreEqual("config", ex.ParamName);
        StringAssert.Contains(ex.Message, "sm_90a");
        StringAssert.Contains(Assert.ThrowsExactly<NotSupportedException>(() => SwiGlu(null, sm90a: false)).Message, "ForceSm80");
        StringAssert.Contains(Assert.ThrowsExactly<NotSupportedException>(() => SwiGlu(null, cc: (8, 0))).Message, "9.0");
        Assert.AreEqual("config", Assert.ThrowsExactly<ArgumentException>(() => SwiGlu(GemmConfig.Wgmma(128, 4), cc: (8, 0))).ParamName);
    }

    [TestMethod]
    public void SwiGlu_BadShapesAndBuffers_NameTheParameter()
    {
        Assert.AreEqual("intermediate", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => SwiGlu(null, inter: 764)).ParamName);
        Assert.AreEqual("act", Assert.ThrowsExactly<ArgumentException>(() => SwiGlu(null, actBytes: 100)).ParamName);
        Assert.AreEqual("act", Assert.ThrowsExactly<ArgumentException>(() => SwiGlu(null, g1: Act + 64)).ParamName, "G1 overlapping A");
        Assert.AreEqual("g1", Assert.ThrowsExactly<ArgumentException>(() => SwiGlu(null, g1: G1 + 8)).ParamName, "G1 not 16-byte aligned");
        Assert.AreEqual("g1", Assert.ThrowsExactly<ArgumentException>(() => SwiGlu(null, g1: X + 16)).ParamName, "G1 overlapping X");
        Assert.AreEqual("cRows", Assert.ThrowsExactly<ArgumentException>(() => SwiGlu(null, cMode: 1)).ParamName);
    }

    [TestMethod]
    public void DSwiGlu_NeedsG1_AndTakesItsSpec()
    {
        Assert.AreEqual("g1", Assert.ThrowsExactly<ArgumentException>(() => DSwiGlu(null, DeviceRange.Null)).ParamName);
        Assert.AreEqual("g1", Assert.ThrowsExactly<ArgumentException>(() => DSwiGlu(null, new DeviceRange(G1, 1000))).ParamName);
        Assert.AreEqual("dG1", Assert.ThrowsExactly<ArgumentException>(() => DSwiGlu(null, new DeviceRange(Act, (long)Rows.TotalRows * 2 * I * Es))).ParamName);
        GroupedGemmSpec spec = DSwiGlu(GemmConfig.Wgmma(256, 3), new DeviceRange(G1, (long)Rows.TotalRows * 2 * I * Es))!.Value.Spec;
        Assert.AreEqual("grouped_gemm_nn_dswiglu_sm90a_bf16_wgmma_128x256x64_s3", spec.EntryName);
    }

    [TestMethod]
    public void Epilogues_BelongToTheirLayoutAndToSm90a()
    {
        Assert.ThrowsExactly<ArgumentException>(() => GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardDataNN, ScalarType.BFloat16, GemmConfig.Wgmma(128, 4), GroupedGemmEpilogue.SwiGlu));
        Assert.ThrowsExactly<ArgumentException>(() => GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, GemmConfig.Wgmma(128, 4), GroupedGemmEpilogue.DSwiGlu));
        Assert.AreEqual("config", Assert.ThrowsExactly<ArgumentException>(() =>
            GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, GemmConfig.Mma(128, 128, 4), GroupedGemmEpilogue.SwiGlu)).ParamName);
        Assert.AreNotEqual(GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, GemmConfig.Wgmma(128, 4)).Key,
            GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, GemmConfig.Wgmma(128, 4), GroupedGemmEpilogue.SwiGlu).Key);
    }

    [TestMethod]
    public void SwiGluSpec_LoadsGateAndUpBoxes_AndWritesG1OnlyWhenAsked()
    {
        GroupedGemmSpec spec = GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.Float16, GemmConfig.Wgmma(256, 4), GroupedGemmEpilogue.SwiGlu);
        Assert.AreEqual("grouped_gemm_nt_swiglu_sm90a_fp16_wgmma_128x256x64_s4", spec.EntryName);
        string ptx = spec.SpecialisedPtx();
        Assert.AreEqual(2, System.Text.RegularExpressions.Regex.Matches(ptx, @"\[w_map, \{k_coord, b_col, b_e\}\]").Count, "gate and up boxes");
        StringAssert.Contains(ptx, "add.u32 b_dst, stage_b, 16384;");     // up rows at BN/2 x 128 B
        StringAssert.Contains(ptx, "shr.s32 epi_cols, n_dim, 1;");        // I = N/2 output columns
        StringAssert.Contains(ptx, "cvt.rn.f16x2.f32 o_u, acc65, acc64;"); // up of gate block 0 is block BN/16 = 16
        StringAssert.Contains(ptx, "@p_g1 st.global.b32");
        string plain = GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.Float16, GemmConfig.Wgmma(256, 4)).SpecialisedPtx();
        Assert.DoesNotContain("ex2.approx", plain);
    }

    [TestMethod]
    public void InferenceOnly_IsNotTrainable()
    {
        var options = new FusedBlockOptions { InferenceOnly = true };
        StringAssert.Contains(Assert.ThrowsExactly<InvalidOperationException>(options.EnsureTrainable).Message, "InferenceOnly");
        StringAssert.Contains(options.Describe(), "inference");
        new FusedBlockOptions().EnsureTrainable();
        Assert.IsFalse(new FusedBlockOptions().FuseSwiGluBackward, "the dSwiGLU epilogue is opt-in (measured slower, docs/PERF.md v13)");
        StringAssert.Contains(new FusedBlockOptions { FuseSwiGluBackward = true }.Describe(), "fuse_dswiglu");
    }
}
