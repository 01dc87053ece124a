using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>
/// The f32-output TN GEMM (the router dW's row-chunk partials): its planning on an sm_90a and an sm_80 path (default
/// tile, spec, shared memory by hand), the validation before any launch (fp32, SIMT or oversized tiles, shapes the
/// tensor cores cannot take, an f32 output too small), the candidates, and the specialised text of both kernels.
/// CPU only (fake pointers with known sizes).
/// </summary>
[TestClass]
public sealed class GroupedGemmFloat32OutputTests
{
    private const int Groups = 5, Tokens = 1024, N = 128, K = 2048;
    private static readonly (int, int) Sm90 = (9, 0);
    private static readonly GroupedRows TheRows = new(0x80000, 0, Tokens, Groups, 1);

    private static GroupedGemm.GemmPlan? Plan(ScalarType dtype, GemmConfig? config, bool sm90a, int n = N, long? dwBytes = null)
    {
        long es = dtype.SizeOf();
        var a = new DeviceRange(0x100000, Tokens * (long)n * es);
        var b = new DeviceRange(0x2000000, Tokens * (long)K * es);
        var dw = new DeviceRange(0x8000000, dwBytes ?? Groups * (long)n * K * 4);
        return GroupedGemm.Plan(GroupedGemmLayout.BackwardWeightTN, dtype, config, Sm90, 132, a, b, dw, DeviceRange.Null, TheRows, n, K,
            0, 0, sm90a, float32Output: true);
    }

    // sm_90a: 128x128 s4 with the f32 staging: 1024 + 4 x (16384 + 16384) + 2 x 64 x (4 x 128 + 32) + 16 x 4 + 2 x 1024
    // = 203840 bytes (the dtype staging of the same tile: 2 x 64 x 272 = 34816, so 169024 in all).
    [TestMethod]
    public void Plan_Sm90a_DefaultsToThe128x128s4TileWithF32Staging()
    {
        GroupedGemm.GemmPlan plan = Plan(ScalarType.BFloat16, null, sm90a: true)!.Value;
        Assert.AreEqual(GemmConfig.Wgmma(128, 4), plan.Spec.Config);
        Assert.IsTrue(plan.Spec.Float32Output);
        Assert.AreEqual(199744, plan.Spec.DynamicSharedBytes);
        Assert.AreEqual(166976, GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16, GemmConfig.Wgmma(128, 4)).DynamicSharedBytes);
        Assert.AreEqual("grouped_gemm_tn_sm90a_bf16_wgmma_128x128x64_s4_f32out", plan.Spec.EntryName);
        Assert.AreEqual(Groups * (long)(N / 128) * (K / 128), plan.Tiles);
    }

    [TestMethod]
    public void Plan_Sm80_TakesAnSm80TileWithTheF32Epilogue()
    {
        GroupedGemm.GemmPlan plan = Plan(ScalarType.Float16, null, sm90a: false)!.Value;
        Assert.AreEqual(GemmMath.MmaSm80, plan.Spec.Math);
        Assert.IsTrue(plan.Spec.Float32Output);
        StringAssert.EndsWith(plan.Spec.EntryName, "_f32out");
        GroupedGemmSpec plain = GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardWeightTN, ScalarType.Float16, plan.Spec.Config);
        Assert.AreNotEqual(plain.Key, plan.Spec.Key);
        Assert.AreNotEqual(plain.ModuleName, plan.Spec.ModuleName);
        Assert.AreEqual(plain.DynamicSharedBytes, plan.Spec.DynamicSharedBytes); // the C tile is f32 on sm_80 already
    }

    [TestMethod]
    public void Plan_RejectsWhatHasNoF32Epilogue_BeforeAnyLaunch()
    {
        Assert.AreEqual("dtype", Assert.ThrowsExactly<ArgumentException>(() => Plan(ScalarType.Float32, null, sm90a: true)).ParamName);
        Assert.AreEqual("config", Assert.ThrowsExactly<ArgumentException>(() => Plan(ScalarType.BFloat16, GemmConfig.Ffma64x64, sm90a: true)).ParamName);
        // the f32 staging does not fit beside 3 stages of 128x256 or 5 of 128x128
        var ex = Assert.ThrowsExactly<ArgumentException>(() => Plan(ScalarType.BFloat16, GemmConfig.Wgmma(256, 3), sm90a: true));
        Assert.AreEqual("config", ex.ParamName);
        StringAssert.Contains(ex.Message, "f32 staging");
        Assert.AreEqual("config", Assert.ThrowsExactly<ArgumentException>(() => Plan(ScalarType.BFloat16, GemmConfig.Wgmma(128, 5), sm90a: true)).ParamName);
        // N not a multiple of 8: the SIMT kernel would take it, but it has no f32 output
        Assert.AreEqual("dw", Assert.ThrowsExactly<ArgumentException>(() => Plan(ScalarType.BFloat16, null, sm90a: true, n: 60)).ParamName);
        // an output sized for the dtype, not for f32
        Assert.AreEqual("dw", Assert.ThrowsExactly<ArgumentException>(() => Plan(ScalarType.BFloat16, null, sm90a: true, dwBytes: Groups * (long)N * K * 2)).ParamName);
        Assert.ThrowsExactly<ArgumentException>(() => GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, GemmConfig.Mma(128, 128, 4), float32Output: true));
    }

    [TestMethod]
    public void Candidates_AreTheTnTensorCoreTilesWhoseF32EpilogueFits()
    {
        IReadOnlyList<GemmConfig> hopper = GroupedGemmSpecs.Float32OutputCandidates(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16, sm90a: true);
        IReadOnlyList<GemmConfig> sm80 = GroupedGemmSpecs.Float32OutputCandidates(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16, sm90a: false);
        CollectionAssert.Contains(hopper.ToList(), GemmConfig.Wgmma(128, 4));
        CollectionAssert.DoesNotContain(hopper.ToList(), GemmConfig.Wgmma(128, 5));
        CollectionAssert.DoesNotContain(hopper.ToList(), GemmConfig.Wgmma(256, 3));
        CollectionAssert.DoesNotContain(hopper.ToList(), GemmConfig.Ffma64x64);
        CollectionAssert.AreEqual(GroupedGemmSpecs.CandidateConfigs(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16).ToList(), sm80.ToList());
        Assert.AreEqual(sm80.Count + 1, hopper.Count);
        Assert.AreEqual(0, GroupedGemmSpecs.Float32OutputCandidates(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, sm90a: true).Count);
        Assert.AreEqual(0, GroupedGemmSpecs.Float32OutputCandidates(GroupedGemmLayout.BackwardWeightTN, ScalarType.Float32, sm90a: true).Count);
    }

    // The f32 kernels store the accumulators as they are (no cvt.rn in the epilogue), 4 bytes per element; the dtype
    // kernels keep their rounding stores.
    [TestMethod]
    public void SpecialisedText_StoresF32Unrounded()
    {
        string hopper = GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16, GemmConfig.Wgmma(128, 4), float32Output: true).SpecialisedPtx();
        string hopperEpilogue = hopper[hopper.IndexOf("C_EPILOGUE:", StringComparison.Ordinal)..];
        StringAssert.Contains(hopperEpilogue, "st.shared.v2.f32 [st_frag+0], {acc0, acc1};");
        StringAssert.Contains(hopperEpilogue, "st.shared.v2.f32 [st_frag+1024], {acc2, acc3};"); // row g+8: 8 x 128 B of a swizzled box
        Assert.IsFalse(hopperEpilogue.Contains("cvt.rn", StringComparison.Ordinal));
        StringAssert.Contains(hopper, ".entry grouped_gemm_tn_sm90a_bf16_wgmma_128x128x64_s4_f32out(");
        string hopperPlain = GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16, GemmConfig.Wgmma(128, 4)).SpecialisedPtx();
        StringAssert.Contains(hopperPlain[hopperPlain.IndexOf("C_EPILOGUE:", StringComparison.Ordinal)..], "cvt.rn.bf16x2.f32 o, acc1, acc0;");

        string sm80 = GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardWeightTN, ScalarType.Float16, GemmConfig.Mma(128, 128, 4), float32Output: true).SpecialisedPtx();
        StringAssert.Contains(sm80, "st.global.v4.f32 [ep_out], {x0, x1, x2, x3};");
        StringAssert.Contains(sm80, "st.global.v4.f32 [ep_out+16], {x4, x5, x6, x7};");
        Assert.IsFalse(sm80.Contains("st.global.v4.b32 [ep_out]", StringComparison.Ordinal));
        string sm80Plain = GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardWeightTN, ScalarType.Float16, GemmConfig.Mma(128, 128, 4)).SpecialisedPtx();
        StringAssert.Contains(sm80Plain, "st.global.v4.b32 [ep_out], {o0, o1, o2, o3};");
    }
}
