using MoeNative.Blocks;
using MoeNative.Reference;
using MoeNative.Interop;

namespace MoeNative.Tests.Blocks;

/// <summary>CPU tests of the fused block's options and entry-point checks (no GPU needed).</summary>
[TestClass]
public sealed class FusedBlockValidationTests
{
    private static readonly MoeConfig Small = MoeConfig.Preset("small");

    [TestMethod]
    public void Options_BothPermutes_Rejected()
    {
        var options = new FusedBlockOptions { PermuteX = true, PermuteY = true };
        var ex = Assert.ThrowsExactly<ArgumentException>(() => options.Validate());
        Assert.AreEqual("options", ex.ParamName);
        Assert.Contains("PermuteX and PermuteY", ex.Message);
    }

    [TestMethod]
    [DataRow(false, false, false, DisplayName = "plain")]
    [DataRow(true, false, false, DisplayName = "permute_x")]
    [DataRow(false, true, false, DisplayName = "permute_y")]
    [DataRow(false, false, true, DisplayName = "fuse_mul_post")]
    [DataRow(true, false, true, DisplayName = "permute_x fuse_mul_post")]
    public void Options_ValidCombinations_Accepted(bool permuteX, bool permuteY, bool fuseMulPost)
    {
        var options = new FusedBlockOptions { PermuteX = permuteX, PermuteY = permuteY, FuseMulPost = fuseMulPost, Autotune = true };
        options.Validate(); // must not throw
        Assert.AreEqual(permuteX, options.Describe().Contains("permute_x", StringComparison.Ordinal));
    }

    [TestMethod]
    public void Options_AutotuneWithExplicitConfig_Rejected()
    {
        var options = new FusedBlockOptions { Autotune = true, ForwardConfig = MoeNative.Ptx.GemmConfig.Mma(128, 128, 3) };
        var ex = Assert.ThrowsExactly<ArgumentException>(() => options.Validate());
        Assert.Contains("Autotune", ex.Message);
    }

    [TestMethod]
    [DataRow(0)]
    [DataRow(-3)]
    public void Options_AutotuneRepetitionsBelowOne_Rejected(int repetitions)
    {
        var options = new FusedBlockOptions { Autotune = true, AutotuneRepetitions = repetitions };
        var ex = Assert.ThrowsExactly<ArgumentException>(() => options.Validate());
        Assert.Contains(repetitions.ToString(System.Globalization.CultureInfo.InvariantCulture), ex.Message);
    }

    [TestMethod]
    public void Options_FuseMulPost_NotTrainable()
    {
        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => new FusedBlockOptions { FuseMulPost = true }.EnsureTrainable());
        Assert.Contains("inference only", ex.Message);
    }

    [TestMethod]
    public void Options_WithoutFuseMulPost_Trainable()
    {
        new FusedBlockOptions { PermuteY = true }.EnsureTrainable(); // must not throw
        Assert.IsFalse(new FusedBlockOptions { PermuteY = true }.FuseMulPost);
    }

    [TestMethod]
    [DataRow(ScalarType.BFloat16, typeof(float), "DeviceBuffer<BFloat16>")]
    [DataRow(ScalarType.Float16, typeof(BFloat16), "DeviceBuffer<Half>")]
    [DataRow(ScalarType.Float32, typeof(Half), "DeviceBuffer<Single>")]
    [DataRow(ScalarType.BFloat16, typeof(ushort), "DeviceBuffer<BFloat16>")]
    public void ElementType_Mismatch_NamesExpectedBuffer(ScalarType dtype, Type given, string expected)
    {
        var ex = Assert.ThrowsExactly<ArgumentException>(() => BlockChecks.ElementType(dtype, given, "x"));
        Assert.AreEqual("x", ex.ParamName);
        Assert.Contains(expected, ex.Message);
        Assert.Contains(dtype.ShortName(), ex.Message);
    }

    [TestMethod]
    [DataRow(ScalarType.BFloat16, typeof(BFloat16))]
    [DataRow(ScalarType.Float16, typeof(Half))]
    [DataRow(ScalarType.Float32, typeof(float))]
    public void ElementType_Match_Accepted(ScalarType dtype, Type given)
    {
        BlockChecks.ElementType(dtype, given, "x"); // must not throw
        Assert.AreEqual(given, StorageConvert.ElementType(dtype));
    }

    // Small: H=256, E=32, k=4. T=7: [T,H] = 1792, [T,k] = 28.
    [TestMethod]
    [DataRow(1791L, 1792L, null, null, "x", "[T=7,H=256]", DisplayName = "x short")]
    [DataRow(1792L, 100L, null, null, "y", "[T=7,H=256]", DisplayName = "y short")]
    [DataRow(1792L, 1792L, 27L, 28L, "routing", "Selected [T=7,k=4] i32", DisplayName = "selected short")]
    [DataRow(1792L, 1792L, 28L, 3L, "routing", "Weights [T=7,k=4] bf16", DisplayName = "weights short")]
    public void ForwardShapes_TooShort_NamesParameterAndShape(long x, long y, long? sel, long? w, string param, string shape)
    {
        var ex = Assert.ThrowsExactly<ArgumentException>(() =>
            BlockChecks.ForwardShapes(Small, ScalarType.BFloat16, 7, x, y, sel, w));
        Assert.AreEqual(param, ex.ParamName);
        Assert.Contains(shape, ex.Message);
    }

    [TestMethod]
    public void ForwardShapes_LongerBuffers_Accepted()
    {
        BlockChecks.ForwardShapes(Small, ScalarType.BFloat16, 7, 4096, 1792, 28, 64); // must not throw
        BlockChecks.ForwardShapes(Small, ScalarType.BFloat16, 0, 0, 0, 0, 0);
        Assert.AreEqual(1792, 7L * Small.HiddenSize);
    }

    [TestMethod]
    public void ForwardShapes_NegativeTokens_Rejected()
    {
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            BlockChecks.ForwardShapes(Small, ScalarType.BFloat16, -1, 0, 0, null, null));
        Assert.AreEqual("tokens", ex.ParamName);
    }

    // Small: H=256, I=128, E=32. [E,H] = 8192, [E,2I,H] = 2097152, [E,H,I] = 1048576.
    [TestMethod]
    [DataRow(1791L, 1792L, 8192L, 2097152L, 1048576L, "dY", DisplayName = "dY short")]
    [DataRow(1792L, 1791L, 8192L, 2097152L, 1048576L, "gradients.HiddenStates", DisplayName = "dX short")]
    [DataRow(1792L, 1792L, 8191L, 2097152L, 1048576L, "gradients.Gate", DisplayName = "dRouter short")]
    [DataRow(1792L, 1792L, 8192L, 2097151L, 1048576L, "gradients.GateUpProj", DisplayName = "dGateUp short")]
    [DataRow(1792L, 1792L, 8192L, 2097152L, 1048575L, "gradients.DownProj", DisplayName = "dDown short")]
    public void BackwardShapes_TooShort_NamesParameter(long dY, long dX, long router, long gateUp, long down, string param)
    {
        var ex = Assert.ThrowsExactly<ArgumentException>(() =>
            BlockChecks.BackwardShapes(Small, 7, dY, dX, router, gateUp, down));
        Assert.AreEqual(param, ex.ParamName);
        Assert.Contains("elements, has", ex.Message);
    }

    [TestMethod]
    [DataRow(FusedGemm.RouterForward, MoeNative.Ptx.GroupedGemmLayout.ForwardNT)]
    [DataRow(FusedGemm.FirstForward, MoeNative.Ptx.GroupedGemmLayout.ForwardNT)]
    [DataRow(FusedGemm.SecondForward, MoeNative.Ptx.GroupedGemmLayout.ForwardNT)]
    [DataRow(FusedGemm.SecondBackwardData, MoeNative.Ptx.GroupedGemmLayout.BackwardDataNN)]
    [DataRow(FusedGemm.FirstBackwardData, MoeNative.Ptx.GroupedGemmLayout.BackwardDataNN)]
    [DataRow(FusedGemm.RouterBackwardData, MoeNative.Ptx.GroupedGemmLayout.BackwardDataNN)]
    [DataRow(FusedGemm.SecondBackwardWeight, MoeNative.Ptx.GroupedGemmLayout.BackwardWeightTN)]
    [DataRow(FusedGemm.FirstBackwardWeight, MoeNative.Ptx.GroupedGemmLayout.BackwardWeightTN)]
    [DataRow(FusedGemm.RouterBackwardWeight, MoeNative.Ptx.GroupedGemmLayout.BackwardWeightTN)]
    [DataRow(FusedGemm.RouterBackwardWeightSplit, MoeNative.Ptx.GroupedGemmLayout.BackwardWeightTN)]
    public void EveryGemm_HasItsLayout(FusedGemm gemm, MoeNative.Ptx.GroupedGemmLayout layout) =>
        Assert.AreEqual(layout, GemmTuner.LayoutOf(gemm));

    [TestMethod]
    public void ExplicitConfigs_UsedPerLayout_WithoutTiming()
    {
        var forward = MoeNative.Ptx.GemmConfig.Mma(128, 64, 4);
        var data = MoeNative.Ptx.GemmConfig.Mma(64, 128, 4);
        var weight = MoeNative.Ptx.GemmConfig.Mma(64, 64, 6);
        var tuner = new GemmTuner(new FusedBlockOptions { ForwardConfig = forward, BackwardDataConfig = data, BackwardWeightConfig = weight });
        var seen = new List<MoeNative.Ptx.GemmConfig?>();
        foreach (FusedGemm gemm in new[] { FusedGemm.FirstForward, FusedGemm.SecondBackwardData, FusedGemm.RouterBackwardWeight })
        {
            Assert.IsFalse(tuner.NeedsTuning(gemm, 128));
            // Without autotune the tuner neither launches nor lists candidates: no GEMM, no stream needed.
            var call = new FusedGemmCall(gemm, default, default, default, default, 8, 8, default, default, default, default);
            seen.Add(tuner.Choose(null!, null!, MoeNative.Interop.ScalarType.BFloat16, 128, in call));
        }
        CollectionAssert.AreEqual(new[] { forward, data, weight }, seen);
        Assert.IsEmpty(tuner.Timings);
    }

    [TestMethod]
    public void PerGemmConfig_WinsOverLayoutConfig()
    {
        var layoutConfig = MoeNative.Ptx.GemmConfig.Mma(128, 128, 4);
        var own = MoeNative.Ptx.GemmConfig.Mma(64, 32, 8);
        var options = new FusedBlockOptions
        {
            ForwardConfig = layoutConfig,
            GemmConfigs = new Dictionary<FusedGemm, MoeNative.Ptx.GemmConfig> { [FusedGemm.SecondForward] = own },
        };
        Assert.AreEqual(own, options.ExplicitConfig(FusedGemm.SecondForward));
        Assert.AreEqual(layoutConfig, options.ExplicitConfig(FusedGemm.FirstForward));
        Assert.IsNull(options.ExplicitConfig(FusedGemm.FirstBackwardData));
        Assert.ThrowsExactly<ArgumentException>(() => (options with { ForwardConfig = null, Autotune = true }).Validate());
    }

    [TestMethod]
    [DataRow("qwen3-30b-a3b", 16, DisplayName = "Qwen3-30B-A3B (H*I = 2048*768): decode kernels up to T = 16")]
    [DataRow("qwen3-235b-a22b", 8, DisplayName = "Qwen3-235B-A22B (4096*1536): up to T = 8")]
    public void DecodeAuto_TakesTheDecodeKernelsUpToTheMeasuredThreshold_PerExpertSize(string preset, int expected)
    {
        Assert.AreEqual(expected, FusedDecodePath.AutoMaxTokens(MoeConfig.Preset(preset)));
    }
}
