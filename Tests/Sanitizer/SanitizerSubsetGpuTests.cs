using MoeNative.Interop;
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
/// - the fused block on the small configs, every valid (permute_x, permute_y), forward and backward, against the
///   grouped reference: routing, router GEMV/GEMM, silu-mul, top-k combine and dX reduction kernels in situ, and the
///   arch dispatch of the card it runs on (sm_90a kernels on a Hopper where the block picks them).
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
        from p in BlockTestModels.Permutes
        select new object[] { config, dtype, 7, p.X, p.Y, false };

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
    public void FusedBlock(string config, ScalarType dtype, int tokens, bool permuteX, bool permuteY, bool autotune) =>
        new ThreeWayTests().GroupedCublas_Vs_Fused_EveryIntermediate(config, dtype, tokens, permuteX, permuteY, autotune);
}
