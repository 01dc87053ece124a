using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>
/// The sm_90a row-tiled kernels' A by TMA (<see cref="GroupedGemm.RowOperandByTma"/>, rows in expert order): the same
/// bytes as the producer's row copies, for the plain NT and NN GEMMs and the SwiGLU / dSwiGLU epilogues, every
/// sm_90a row tile, bf16 and fp16. The experts end inside the first and the second 64-row box of a tile (1, 17, 65,
/// 129, 300 rows) and on tile edges (64, 128, 192), so the tail boxes read the next expert's rows, skip a half or read
/// past R; K = 200 ends inside a k-tile (zero-filled columns). Outputs poisoned (0xFF) before each run; correctness
/// against float64 is the RowTiled / fused-epilogue tests' job (they run the default, TMA). Needs compute capability
/// 9.0 (Inconclusive elsewhere). Filter: FullyQualifiedName~Sm90a.
/// </summary>
[TestClass]
public sealed class Sm90aRowOperandTmaGpuTests
{
    private static readonly int[] MSizes = [300, 0, 1, 65, 129, 0, 17, 64, 128, 192];
    private const int TopK = 2, N = 272, K = 200;

    public static IEnumerable<object[]> Rows() =>
        from t in new[] { ScalarType.BFloat16, ScalarType.Float16 }
        from cfg in GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.ForwardNT, t)
        select new object[] { t, cfg.Name };

    public static string RowName(System.Reflection.MethodInfo method, object[] row) =>
        $"{method.Name}({((ScalarType)row[0]).ShortName()}, {row[1]})";

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DynamicData(nameof(Rows), DynamicDataDisplayName = nameof(RowName))]
    public void IdentityRows_ByTma_MatchRowCopies(ScalarType dtype, string configName)
    {
        CudaContext ctx = Sm90aGroupedGemmGpuTests.RequireHopper();
        GemmConfig cfg = GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.ForwardNT, dtype).Single(c => c.Name == configName);
        int seed = Environment.TickCount;
        Console.WriteLine($"IdentityRows_ByTma_MatchRowCopies {dtype.ShortName()} {cfg.Name}: seed {seed}");
        var rng = new Random(seed);
        using var routing = new ShuffledGroupedRows(ctx, MSizes, TopK, rng);
        int rows = routing.Rows, experts = routing.Experts, inter = N / 2;
        GroupedRows grouped = routing.Grouped;
        var byTma = new GroupedGemm(ctx) { RowOperandByTma = true };
        var byCopies = new GroupedGemm(ctx) { RowOperandByTma = false };

        using var stream = new CudaStream(ctx);
        // A [rows, max(N, K)] (X for NT, dY for NN); W [E, N, K]; G1 [rows, N] (N = 2I); the row scale [rows]
        using DeviceBuffer<byte> a = HostData.Upload(ctx, dtype, HostData.Random(dtype, (long)rows * Math.Max(N, K), rng));
        using DeviceBuffer<byte> w = HostData.Upload(ctx, dtype, HostData.Random(dtype, (long)experts * N * K, rng));
        using DeviceBuffer<byte> g1 = HostData.Upload(ctx, dtype, HostData.Random(dtype, (long)rows * N, rng, -4.0, 4.0));
        using DeviceBuffer<byte> scale = HostData.Upload(ctx, dtype, HostData.Random(dtype, rows, rng, 0.1, 1.0));
        long es = dtype.SizeOf();
        using var outTma = new DeviceBuffer<byte>(ctx, rows * (long)Math.Max(N, K) * es);
        using var outCopies = new DeviceBuffer<byte>(ctx, rows * (long)Math.Max(N, K) * es);
        using var auxTma = new DeviceBuffer<byte>(ctx, rows * (long)N * es);
        using var auxCopies = new DeviceBuffer<byte>(ctx, rows * (long)N * es);

        Assert.AreEqual(1, byTma.RowOperand(dtype, a, grouped, K, RowSource.Identity).ByTma, "RowOperandByTma with expert-ordered rows takes TMA");
        Assert.AreEqual(0, byTma.RowOperand(dtype, a, grouped, K, RowSource.GatherToken).ByTma, "gathered rows keep the row copies");
        Assert.AreEqual(0, byCopies.RowOperand(dtype, a, grouped, K, RowSource.Identity).ByTma, "RowOperandByTma = false keeps the row copies");

        void Compare(string what, Action<GroupedGemm, DeviceBuffer<byte>, DeviceBuffer<byte>> call)
        {
            foreach (DeviceBuffer<byte> b in new[] { outTma, outCopies, auxTma, auxCopies }) b.FillBytes(0xFF, stream);
            call(byTma, outTma, auxTma);
            call(byCopies, outCopies, auxCopies);
            stream.Synchronize();
            string name = $"{what} {dtype.ShortName()} {cfg.Name} seed {seed}";
            AssertSame(name, outCopies.ToArray(), outTma.ToArray());
            AssertSame(name + " (G1)", auxCopies.ToArray(), auxTma.ToArray());
        }

        Compare("NT (GEMM2: act rows, row scale)", (g, c, _) =>
            g.ForwardNT(stream, dtype, cfg, a, w, c, grouped, N, K, RowSource.Identity, RowTarget.Identity, scale));
        Compare("NN (GEMM1 dX: dG1 rows, scattered)", (g, c, _) =>
            g.BackwardDataNN(stream, dtype, cfg, a, w, c, grouped, N, K, RowSource.Identity, RowTarget.Scatter));
        Compare("NT SwiGLU", (g, c, aux) =>
            g.ForwardNTSwiGlu(stream, dtype, cfg, a, w, c, aux, grouped, inter, K, RowSource.Identity));
        Compare("NN dSwiGLU", (g, c, _) =>
            g.BackwardDataNNDSwiGlu(stream, dtype, cfg, a, w, g1, c, grouped, K, inter, RowSource.Identity));
    }

    private static void AssertSame(string what, byte[] expected, byte[] actual)
    {
        int same = expected.AsSpan().CommonPrefixLength(actual);
        Assert.AreEqual(expected.Length, same, $"{what}: A by TMA differs from the row copies at byte {same}");
    }
}
