using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;
using MoeNative.Tests.Blocks;
using MoeNative.Tests.Ptx.GroupedGemmTests;

namespace MoeNative.Tests.Sanitizer;

/// <summary>
/// The GPU tests <c>tools/device/run.sh sanitize</c> runs under compute-sanitizer (memcheck, racecheck, initcheck,
/// synccheck): a subset small enough for the sanitizers' slowdown that still launches every kernel family and every
/// specialisation kind. Each row is an existing test (same checks against the float64 / reference result):
/// - grouped GEMM, per layout (NT forward, NN backward-data, TN backward-weight) and dtype: every candidate tile
///   configuration (and the FFMA kernel) on one odd shape with empty and one-row experts, in the plain row mode; the
///   first configuration in every row mode (gather, gather-by-token, scatter, scaled); an unaligned shape (SIMT);
/// - the fused block on the small configs at T = 7 and 300, every valid (permute_x, permute_y), forward and backward, against the
///   grouped reference on the host (no cuBLAS kernel under the sanitizers): routing, router GEMV/GEMM, silu-mul, top-k
///   combine and dX reduction kernels in situ, and the arch dispatch of the card it runs on (sm_90a kernels on a
///   Hopper where the block picks them).
/// The small-kernel classes (Routing, Elementwise) and the graph replay test run whole beside it (see run.sh).
/// Category <see cref="Category"/> and <see cref="GpuTest.Category"/>.
/// </summary>
[TestClass]
[DoNotParallelize]
public sealed class SanitizerSubsetGpuTests
{
    /// <summary>Test category of the sanitizer subset.</summary>
    public const string Category = "Sanitize";

    private const string OddCase = "E8_m130-0-1-0-17-64-0-4_k8_N200_K72";

    private static IEnumerable<object[]> Subset(IEnumerable<object[]> rows)
    {
        object[][] all = rows.ToArray();
        string? firstConfig = all.Where(r => (string)r[2] == OddCase).Select(r => (string)r[1]).FirstOrDefault();
        string unaligned = GemmCase.Unaligned[0].Name;
        return all.Where(r => ((string)r[2] == OddCase && ((int)r[3] == 0 || (string)r[1] == firstConfig))
            || ((string)r[2] == unaligned && (int)r[3] == 0));
    }

    public static IEnumerable<object[]> ForwardRows() => Subset(GroupedGemmGpuTests.ForwardRows());
    public static IEnumerable<object[]> DataRows() => Subset(GroupedGemmGpuTests.DataRows());
    public static IEnumerable<object[]> WeightRows() => Subset(GroupedGemmGpuTests.WeightRows());

    public static IEnumerable<object[]> FusedRows() =>
        from config in new[] { "small-k1", "small" }
        from dtype in BlockTestModels.DTypes
        from tokens in new[] { 7, 300 }   // the decode path (small T, when the block picks it) and the prefill path
        from p in BlockTestModels.Permutes
        select new object[] { config, dtype, tokens, p.X, p.Y, false };

    public static string RowName(System.Reflection.MethodInfo method, object[] row) => GroupedGemmGpuTests.RowName(method, row);

    public static string FusedRowName(System.Reflection.MethodInfo method, object[] row) => ThreeWayTests.FusedRowName(method, row);

    [TestMethod]
    [TestCategory(Category), TestCategory(GpuTest.Category)]
    [DynamicData(nameof(ForwardRows), DynamicDataDisplayName = nameof(RowName))]
    public void GroupedGemmNT(ScalarType dtype, string configName, string caseName, int mode) =>
        new GroupedGemmGpuTests().ForwardNT_MatchesFloat64(dtype, configName, caseName, mode);

    [TestMethod]
    [TestCategory(Category), TestCategory(GpuTest.Category)]
    [DynamicData(nameof(DataRows), DynamicDataDisplayName = nameof(RowName))]
    public void GroupedGemmNN(ScalarType dtype, string configName, string caseName, int mode) =>
        new GroupedGemmGpuTests().BackwardDataNN_MatchesFloat64(dtype, configName, caseName, mode);

    [TestMethod]
    [TestCategory(Category), TestCategory(GpuTest.Category)]
    [DynamicData(nameof(WeightRows), DynamicDataDisplayName = nameof(RowName))]
    public void GroupedGemmTN(ScalarType dtype, string configName, string caseName, int mode) =>
        new GroupedGemmGpuTests().BackwardWeightTN_MatchesFloat64(dtype, configName, caseName, mode);

    [TestMethod]
    [TestCategory(Category), TestCategory(GpuTest.Category)]
    [DynamicData(nameof(FusedRows), DynamicDataDisplayName = nameof(FusedRowName))]
    public void FusedBlock(string config, ScalarType dtype, int tokens, bool permuteX, bool permuteY, bool autotune)
    {
        CudaContext context = GpuTest.RequireContext();
        MoeConfig c = BlockTestModels.Config(config);
        // NOTE: the grouped reference on the HOST here (not cuBLAS as in ThreeWayTests): the sanitizers then see only
        // MoeNative's kernels, so every error they count is ours.
        MoeWeights weights = BlockTestModels.Weights(config, dtype);
        (float[] x, float[] dY) = BlockTestModels.Inputs(config, dtype, tokens);
        var reference = new GroupedMoeReference(weights, dtype, HostGemm.Instance);
        MoeIntermediates expected = reference.Forward(x);
        MoeGradients expectedGrads = reference.Backward(expected, dY);
        var options = new FusedBlockOptions { PermuteX = permuteX, PermuteY = permuteY, Autotune = autotune };
        using var block = new Qwen3MoeFusedBlock(context, weights, dtype, options);
        MoeIntermediates fused = block.Forward(x, tokens, expected.Routing, intermediates: true);
        MoeGradients fusedGrads = block.Backward(dY);
        var log = new ComparisonLog(dtype);
        log.Equal("gather", fused.Gather, expected.Gather);
        log.Close("router_logits", fused.RouterLogits, expected.RouterLogits);
        log.Close("intermediate", fused.Intermediate, expected.Intermediate);
        log.Close("output", fused.Output, expected.Output);
        ThreeWayTests.CompareGradients(log, c, fusedGrads, expectedGrads, routerScale: null);
        log.AssertAll($"grouped (host) vs fused {config} {dtype.ShortName()} T={tokens} {options.Describe()} " +
            $"(input seed {BlockTestModels.InputSeed(config, dtype, tokens)})");
    }
}
