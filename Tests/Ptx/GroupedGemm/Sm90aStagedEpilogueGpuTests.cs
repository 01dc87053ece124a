using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>
/// The sm_90a row tiles' staged epilogue (<see cref="GemmConfig.StagedEpilogue"/>: the tile through shared staging
/// and per-row bulk async copies) changes only the store path, so every staged tile must give the bytes of its
/// register-store twin (the same tile with StagedEpilogue = false) on the same inputs: plain NT with gathered A rows,
/// rows scattered to gather[r] and scaled by the routing weight (GEMM2); plain NN scattered (GEMM1 dX); SwiGLU with G1
/// (training) and without (inference). Experts of 0, 1, 63, 65, 300, 129 and 18 rows; N and I multiples of 8 but of no
/// tile (N tails). Each on the full grid and on a 3-CTA grid (every CTA walks many tiles: the staging is reused
/// behind the previous tile's copies). Outputs poisoned (0xFF) before each run. Correctness against the float64 host
/// is Sm90aGroupedGemmGpuTests' and Sm90aFusedEpilogueGpuTests' job (they take every candidate, the staged ones too).
/// Needs compute capability 9.0 (Inconclusive elsewhere). Filter: FullyQualifiedName~Sm90aStaged.
/// </summary>
[TestClass]
public sealed class Sm90aStagedEpilogueGpuTests
{
    private static readonly int[] MSizes = [300, 0, 1, 63, 65, 129, 0, 18]; // 576 rows: a multiple of TopK (RowSource.GatherToken)
    private const int TopK = 2, N = 264, K = 200, Intermediate = 136;

    public static IEnumerable<object[]> Rows() =>
        from t in new[] { ScalarType.BFloat16, ScalarType.Float16 }
        from cfg in GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.ForwardNT, t).Where(c => c.StagedEpilogue)
        from call in new[] { "nt_gather_scatter_scale", "nn_scatter", "swiglu_training", "swiglu_inference" }
        select new object[] { t, cfg.Name, call };

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DynamicData(nameof(Rows))]
    public void StagedEpilogue_GivesTheRegisterTwinsBytes(ScalarType dtype, string configName, string call)
    {
        CudaContext ctx = Sm90aGroupedGemmGpuTests.RequireHopper();
        GemmConfig staged = GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.ForwardNT, dtype).Single(c => c.Name == configName);
        GemmConfig registers = staged with { StagedEpilogue = false };
        int seed = 900 + configName.Length + call.Length;
        var rng = new Random(seed);
        using var routing = new ShuffledGroupedRows(ctx, MSizes, TopK, rng);
        int rows = routing.Rows, experts = routing.Experts;
        GroupedRows grouped = routing.Grouped;

        using var stream = new CudaStream(ctx);
        int width = Math.Max(N, 2 * Intermediate);
        using DeviceBuffer<byte> a = HostData.Upload(ctx, dtype, HostData.Random(dtype, (long)rows * Math.Max(width, K), rng));
        using DeviceBuffer<byte> w = HostData.Upload(ctx, dtype, HostData.Random(dtype, (long)experts * width * K, rng));
        using DeviceBuffer<byte> scale = HostData.Upload(ctx, dtype, HostData.Random(dtype, rows, rng, 0.1, 1.0));
        using var c = new DeviceBuffer<byte>(ctx, (long)rows * width * dtype.SizeOf());     // C [rows, N | K | I]
        using var g1 = new DeviceBuffer<byte>(ctx, (long)rows * 2 * Intermediate * dtype.SizeOf()); // G1 [rows, 2I]

        void Call(GroupedGemm gemm, GemmConfig cfg)
        {
            switch (call)
            {
                case "nt_gather_scatter_scale": // GEMM2-like: rows scaled by the routing weight and scattered
                    gemm.ForwardNT(stream, dtype, cfg, a, w, c, grouped, N, K, RowSource.GatherToken, RowTarget.Scatter, scale);
                    break;
                case "nn_scatter": // GEMM1 dX-like: dY rows in order, dX scattered
                    gemm.BackwardDataNN(stream, dtype, cfg, a, w, c, grouped, N, K, RowSource.Identity, RowTarget.Scatter);
                    break;
                case "swiglu_training":
                    gemm.ForwardNTSwiGlu(stream, dtype, cfg, a, w, c, g1, grouped, Intermediate, K, RowSource.GatherToken);
                    break;
                default: // swiglu_inference: no G1
                    gemm.ForwardNTSwiGlu(stream, dtype, cfg, a, w, c, DeviceRange.Null, grouped, Intermediate, K, RowSource.GatherToken);
                    break;
            }
        }

        (byte[] C, byte[] G1) Run(GroupedGemm gemm, GemmConfig cfg)
        {
            c.FillBytes(0xFF, stream);
            g1.FillBytes(0xFF, stream);
            Call(gemm, cfg);
            stream.Synchronize();
            return (c.ToArray(), g1.ToArray());
        }

        GroupedGemm full = GroupedGemm.For(ctx);
        var small = new GroupedGemm(ctx) { GridLimitForTesting = 3 };
        (byte[] expectC, byte[] expectG1) = Run(full, registers);
        int written = call.StartsWith("swiglu", StringComparison.Ordinal) ? rows * Intermediate : call == "nn_scatter" ? rows * K : rows * N;
        Assert.IsFalse(HostData.FromBytes(dtype, expectC).Take(written).Any(float.IsNaN), $"seed {seed}: the register twin left an output element unwritten");
        foreach ((GroupedGemm gemm, string grid) in new[] { (full, "full grid"), (small, "3-CTA grid") })
        {
            (byte[] gotC, byte[] gotG1) = Run(gemm, staged);
            AssertSame(expectC, gotC, $"seed {seed} {configName} {call} {grid}: C", dtype);
            AssertSame(expectG1, gotG1, $"seed {seed} {configName} {call} {grid}: G1", dtype);
        }
    }

    private static void AssertSame(byte[] expected, byte[] actual, string what, ScalarType dtype)
    {
        int same = expected.AsSpan().CommonPrefixLength(actual);
        Assert.AreEqual(expected.Length, same, $"{what} differs from the register-store twin at byte {same} (element {same / dtype.SizeOf()})");
    }
}
