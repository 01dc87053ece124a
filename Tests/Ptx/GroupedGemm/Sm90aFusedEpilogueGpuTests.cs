using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Tests.Support;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>
/// The sm_90a SwiGLU (GEMM1, NT) and dSwiGLU (GEMM2 dX, NN) epilogues on the GPU: each against the float64 host
/// product followed by the host SwiGLU on the dtype-rounded values (tolerance), and bit for bit against the unfused
/// pair on the same tile (plain sm_90a GEMM, then SiluMulForward / SiluMulBackward). Shapes: GemmCase.All with N read
/// as I (I = 72, 136, 200, 264: not multiples of any half tile; empty, 1-row and 65-row experts), every sm_90a
/// tile, bf16 and fp16, every row mode the block uses. Outputs poisoned (0xFF) first. Filter: FullyQualifiedName~Sm90a.
/// </summary>
[TestClass]
public sealed class Sm90aFusedEpilogueGpuTests
{
    private static readonly ScalarType[] Dtypes = [ScalarType.BFloat16, ScalarType.Float16];
    private static readonly RowSource[] SwiGluSources = [RowSource.GatherToken, RowSource.Identity];
    private static readonly RowSource[] DSwiGluSources = [RowSource.Identity, RowSource.Gather];

    public static IEnumerable<object[]> Rows() =>
        from t in Dtypes
        from cfg in GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.ForwardNT, t)
        from gc in GemmCase.All
        where cfg.ShapeProblem(GroupedGemmLayout.ForwardNT, 2 * gc.N, gc.K) is null // SwiGLU reduces over K (dSwiGLU runs staged tiles as their twins)
        from m in Enumerable.Range(0, 2)
        select new object[] { t, cfg.Name, gc.Name, m };

    public static string RowName(System.Reflection.MethodInfo method, object[] row) =>
        $"{method.Name}({((ScalarType)row[0]).ShortName()}, {row[1]}, {row[2]}, mode {row[3]})";

    private static GemmConfig Config(ScalarType t, string name) =>
        GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.ForwardNT, t).Single(c => c.Name == name);

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DynamicData(nameof(Rows), DynamicDataDisplayName = nameof(RowName))]
    public void SwiGlu_Sm90a_MatchesHostAndUnfused(ScalarType dtype, string configName, string caseName, int mode)
    {
        CudaContext ctx = Sm90aGroupedGemmGpuTests.RequireHopper();
        RunSwiGlu(ctx, GroupedGemm.For(ctx), dtype, Config(dtype, configName), GemmCase.All.Single(c => c.Name == caseName),
            SwiGluSources[mode], seed: 511 + mode);
    }

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DynamicData(nameof(Rows), DynamicDataDisplayName = nameof(RowName))]
    public void DSwiGlu_Sm90a_MatchesHostAndUnfused(ScalarType dtype, string configName, string caseName, int mode)
    {
        CudaContext ctx = Sm90aGroupedGemmGpuTests.RequireHopper();
        RunDSwiGlu(ctx, GroupedGemm.For(ctx), dtype, Config(dtype, configName), GemmCase.All.Single(c => c.Name == caseName),
            DSwiGluSources[mode], seed: 541 + mode);
    }

    public static IEnumerable<object[]> TileRows() =>
        from t in Dtypes from cfg in GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.ForwardNT, t) select new object[] { t, cfg.Name };

    /// <summary>Inputs 6x larger: many gates g below -87, where the sigmoid's denominator leaves rcp.rn's fast path,
    /// so those rows take the epilogue's exact second pass; still the unfused kernel's bits (A may overflow fp16
    /// to inf on both paths, so only G1 is checked against the host here).</summary>
    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DynamicData(nameof(TileRows))]
    public void SwiGlu_Sm90a_LargeGates_SameBitsAsUnfused(ScalarType dtype, string configName)
    {
        CudaContext ctx = Sm90aGroupedGemmGpuTests.RequireHopper();
        foreach (GemmCase c in GemmCase.All.Skip(1))
            RunSwiGlu(ctx, GroupedGemm.For(ctx), dtype, Config(dtype, configName), c, RowSource.GatherToken, seed: 591, range: 6.0);
    }

    /// <summary>A capped grid (each CTA walks many tiles and experts) and the null config (the sm_90a default).</summary>
    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DataRow(1)]
    [DataRow(3)]
    public void FusedEpilogues_SmallGridsAndDefaultConfig(int gridLimit)
    {
        CudaContext ctx = Sm90aGroupedGemmGpuTests.RequireHopper();
        var gemm = new GroupedGemm(ctx) { GridLimitForTesting = gridLimit, ForceSm80 = false };
        foreach (GemmCase c in GemmCase.All)
        {
            RunSwiGlu(ctx, gemm, ScalarType.BFloat16, null, c, RowSource.GatherToken, seed: 571);
            RunDSwiGlu(ctx, gemm, ScalarType.BFloat16, null, c, RowSource.Gather, seed: 572);
        }
    }

    /// <summary>ForceSm80 with a null config: a fused call has no kernel and says so before any launch.</summary>
    [TestMethod]
    [TestCategory(GpuTest.Category)]
    public void FusedEpilogue_WithForceSm80AndNullConfig_Throws()
    {
        CudaContext ctx = Sm90aGroupedGemmGpuTests.RequireHopper();
        var gemm = new GroupedGemm(ctx) { ForceSm80 = true };
        GemmCase c = GemmCase.All[3];
        using var stream = new CudaStream(ctx);
        using var m = new DeviceBuffer<int>(ctx, c.Experts);
        m.CopyFromHost(c.MSizes);
        using var buf = new DeviceBuffer<byte>(ctx, 1 << 22);
        var rows = new GroupedRows(m.DevicePointer, 0, c.Rows, c.Experts, c.TopK);
        var ex = Assert.ThrowsExactly<NotSupportedException>(() => gemm.ForwardNTSwiGlu(stream, ScalarType.BFloat16, null,
            buf.Slice(0, 1 << 20), buf.Slice(1 << 20, 1 << 20), buf.Slice(2 << 20, 1 << 20), DeviceRange.Null, rows, c.N, c.K, RowSource.Identity));
        StringAssert.Contains(ex.Message, "ForceSm80");
        Assert.IsNull(gemm.Sm90aConfigFor(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, null, buf.Slice(0, 1 << 20), buf.Slice(1 << 20, 1 << 20),
            buf.Slice(2 << 20, 1 << 20), rows, 2 * c.N, c.K, RowSource.Identity, RowTarget.Identity), "ForceSm80: the plain call runs sm_80");
    }

    // ============================================================================================== runners

    /// <summary>GEMM1 + SwiGLU: I = c.N, K = c.K, W [E, 2I, K]; training (G1 written) and inference (G1 null).</summary>
    internal static void RunSwiGlu(CudaContext ctx, GroupedGemm gemm, ScalarType dtype, GemmConfig? cfg, GemmCase c, RowSource source, int seed,
        double range = 1.0)
    {
        Console.WriteLine($"RunSwiGlu {dtype.ShortName()} {cfg?.Name ?? "default"} {c.Name} {source} range {range}: seed {seed}");
        var rng = new Random(seed);
        int inter = c.N, k = c.K, r = c.Rows;
        int[] gather = GroupedGemmGpuTests.Permutation(r, rng);
        int aRows = source == RowSource.GatherToken ? c.Tokens : r;
        float[] x = HostData.Random(dtype, (long)aRows * k, rng, -range, range);
        float[] w = HostData.Random(dtype, (long)c.Experts * 2 * inter * k, rng, -range, range);

        var g1 = new double[(long)r * 2 * inter];
        GroupedGemmGpuTests.ForEachRow(c, (e, row) =>
        {
            int ar = source == RowSource.GatherToken ? gather[row] / c.TopK : row;
            for (int col = 0; col < 2 * inter; col++)
            {
                double acc = 0;
                long wo = ((long)e * 2 * inter + col) * k, xo = (long)ar * k;
                for (int q = 0; q < k; q++) acc += (double)x[xo + q] * w[wo + q];
                g1[(long)row * 2 * inter + col] = acc;
            }
        });

        using var stream = new CudaStream(ctx);
        using DeviceBuffer<int> dm = GroupedGemmGpuTests.Upload(ctx, c.MSizes);
        using DeviceBuffer<int> dg = GroupedGemmGpuTests.Upload(ctx, gather);
        using DeviceBuffer<byte> dx = HostData.Upload(ctx, dtype, x);
        using DeviceBuffer<byte> dw = HostData.Upload(ctx, dtype, w);
        long es = dtype.SizeOf();
        using var g1Fused = new DeviceBuffer<byte>(ctx, r * 2L * inter * es);
        using var actFused = new DeviceBuffer<byte>(ctx, r * (long)inter * es);
        using var actInference = new DeviceBuffer<byte>(ctx, r * (long)inter * es);
        using var g1Plain = new DeviceBuffer<byte>(ctx, r * 2L * inter * es);
        using var actPlain = new DeviceBuffer<byte>(ctx, r * (long)inter * es);
        foreach (DeviceBuffer<byte> b in new[] { g1Fused, actFused, actInference, g1Plain, actPlain }) b.FillBytes(0xFF, stream);
        var rows = new GroupedRows(dm.DevicePointer, dg.DevicePointer, r, c.Experts, c.TopK);
        GemmConfig tile = cfg ?? GroupedGemmSm90aSpecs.Default(GroupedGemmLayout.ForwardNT, 2 * inter);

        gemm.ForwardNTSwiGlu(stream, dtype, cfg, dx, dw, actFused, g1Fused, rows, inter, k, source);
        gemm.ForwardNTSwiGlu(stream, dtype, cfg, dx, dw, actInference, DeviceRange.Null, rows, inter, k, source);
        gemm.ForwardNT(stream, dtype, tile, dx, dw, g1Plain, rows, 2 * inter, k, source, RowTarget.Identity, DeviceRange.Null);
        MoeKernels.For(ctx).SiluMulForward(stream, dtype, g1Plain, actPlain, r, inter);
        stream.Synchronize();

        string name = $"SwiGlu {dtype.ShortName()} {tile.Name} {c.Name} {source} seed {seed}";
        float[] g1Device = HostData.Download(dtype, g1Fused);
        AssertClose(name + " G1", dtype, g1Device, g1);
        AssertSameBytes(name + " G1 vs unfused", g1Plain, g1Fused);
        AssertSameBytes(name + " A vs unfused", actPlain, actFused);
        AssertSameBytes(name + " A (inference) vs unfused", actPlain, actInference);
        if (range > 1.0) return;
        // A from the device's G1 (checked just above): a 1-ulp rounding flip of g or u would otherwise exceed fp16's
        // tolerance where |A| is large
        var act = new double[(long)r * inter];
        for (long row = 0; row < r; row++)
            for (int col = 0; col < inter; col++)
            {
                double g = g1Device[row * 2 * inter + col], u = g1Device[row * 2 * inter + inter + col];
                act[row * inter + col] = g / (1 + Math.Exp(-g)) * u;
            }
        AssertClose(name + " A", dtype, HostData.Download(dtype, actFused), act);
    }

    /// <summary>GEMM2 dX + dSwiGLU: N = c.K (reduction, H), I = c.N, W [E, N, I]; G1 random.</summary>
    internal static void RunDSwiGlu(CudaContext ctx, GroupedGemm gemm, ScalarType dtype, GemmConfig? cfg, GemmCase c, RowSource source, int seed)
    {
        Console.WriteLine($"RunDSwiGlu {dtype.ShortName()} {cfg?.Name ?? "default"} {c.Name} {source}: seed {seed}");
        var rng = new Random(seed);
        int inter = c.N, n = c.K, r = c.Rows;
        int[] gather = GroupedGemmGpuTests.Permutation(r, rng);
        float[] dy = HostData.Random(dtype, (long)r * n, rng);
        float[] w = HostData.Random(dtype, (long)c.Experts * n * inter, rng);
        float[] g1 = HostData.Random(dtype, (long)r * 2 * inter, rng, -4.0, 4.0);
        // a few gates far below -87 (1 + e^-g >= 2^126, up to inf): their rows take the epilogue's exact rcp.rn pass
        for (long q = 0; q < g1.Length; q += 97)
            if (q % (2 * inter) < inter) g1[q] = HostData.Round(dtype, -90.0 - q % 5 * 1000.0);

        var dAHost = new double[(long)r * inter];
        GroupedGemmGpuTests.ForEachRow(c, (e, row) =>
        {
            int ar = source == RowSource.Gather ? gather[row] : row;
            for (int q = 0; q < n; q++)
            {
                double a = dy[(long)ar * n + q];
                long wo = ((long)e * n + q) * inter;
                for (int col = 0; col < inter; col++) dAHost[(long)row * inter + col] += a * w[wo + col];
            }
        });

        using var stream = new CudaStream(ctx);
        using DeviceBuffer<int> dm = GroupedGemmGpuTests.Upload(ctx, c.MSizes);
        using DeviceBuffer<int> dg = GroupedGemmGpuTests.Upload(ctx, gather);
        using DeviceBuffer<byte> ddy = HostData.Upload(ctx, dtype, dy);
        using DeviceBuffer<byte> dw = HostData.Upload(ctx, dtype, w);
        using DeviceBuffer<byte> dg1 = HostData.Upload(ctx, dtype, g1);
        long es = dtype.SizeOf();
        using var dG1Fused = new DeviceBuffer<byte>(ctx, r * 2L * inter * es);
        using var dAPlain = new DeviceBuffer<byte>(ctx, r * (long)inter * es);
        using var dG1Plain = new DeviceBuffer<byte>(ctx, r * 2L * inter * es);
        foreach (DeviceBuffer<byte> b in new[] { dG1Fused, dAPlain, dG1Plain }) b.FillBytes(0xFF, stream);
        var rows = new GroupedRows(dm.DevicePointer, dg.DevicePointer, r, c.Experts, c.TopK);
        GemmConfig tile = cfg ?? GroupedGemmSm90aSpecs.Default(GroupedGemmLayout.BackwardDataNN, inter);

        gemm.BackwardDataNNDSwiGlu(stream, dtype, cfg, ddy, dw, dg1, dG1Fused, rows, n, inter, source);
        gemm.BackwardDataNN(stream, dtype, tile, ddy, dw, dAPlain, rows, n, inter, source, RowTarget.Identity);
        MoeKernels.For(ctx).SiluMulBackward(stream, dtype, dg1, dAPlain, dG1Plain, r, inter);
        stream.Synchronize();

        string name = $"DSwiGlu {dtype.ShortName()} {tile.Name} {c.Name} {source} seed {seed}";
        float[] dADevice = HostData.Download(dtype, dAPlain);
        AssertClose(name + " dA (unfused GEMM)", dtype, dADevice, dAHost);
        // dG1 from the device's dA (checked just above; a 1-ulp flip would otherwise exceed fp16's tolerance)
        var dG1 = new double[(long)r * 2 * inter];
        for (long row = 0; row < r; row++)
            for (int col = 0; col < inter; col++)
            {
                double d = dADevice[row * inter + col], g = g1[row * 2 * inter + col], u = g1[row * 2 * inter + inter + col];
                double s = 1 / (1 + Math.Exp(-g));
                dG1[row * 2 * inter + col] = d * u * s * (1 + g * (1 - s));
                dG1[row * 2 * inter + inter + col] = d * g * s;
            }
        AssertClose(name + " dG1", dtype, HostData.Download(dtype, dG1Fused), dG1);
        AssertSameBytes(name + " dG1 vs unfused", dG1Plain, dG1Fused);
    }

    // ============================================================================================== helpers

    private static void AssertClose(string name, ScalarType dtype, float[] actual, double[] expected)
    {
        double tol = Tolerance.For(dtype);
        Comparison cmp = Numerics.Compare(name, actual, expected.Select(v => (float)v).ToArray(), tol);
        Assert.IsTrue(cmp.AllClose && cmp.RelativeNormError <= tol, cmp.ToString());
    }

    private static void AssertSameBytes(string name, DeviceBuffer<byte> expected, DeviceBuffer<byte> actual)
    {
        byte[] e = expected.ToArray(), a = actual.ToArray();
        int same = e.AsSpan().CommonPrefixLength(a);
        Assert.AreEqual(e.Length, same, $"{name}: first different byte {same} (element {same / 2}) of {e.Length}");
    }
}
