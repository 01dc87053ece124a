using System.Buffers.Binary;
using System.Globalization;
using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Tests.Support;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>One odd grouped shape: rows per expert (zeros, ones, large), top-k, N and K (multiples of 8, not of any tile).</summary>
public sealed record GemmCase(string Name, int[] MSizes, int TopK, int N, int K)
{
    public int Experts => MSizes.Length;
    public int Rows => MSizes.Sum();
    public int Tokens => Rows / TopK;
    public override string ToString() => Name;

    public static readonly GemmCase[] All =
    [
        new("E1_m77_k1_N72_K40", [77], 1, 72, 40),
        new("E3_m0-1-65_k2_N136_K200", [0, 1, 65], 2, 136, 200),
        new("E8_m130-0-1-0-17-64-0-4_k8_N200_K72", [130, 0, 1, 0, 17, 64, 0, 4], 8, 200, 72),
        new("E3_m300-129-0_k3_N264_K136", [300, 129, 0], 3, 264, 136),
    ];

    /// <summary>Shapes only the SIMT kernel takes (N or K not a multiple of 8, e.g. a router GEMM with E = 12).</summary>
    public static readonly GemmCase[] Unaligned =
    [
        new("E1_m70_k1_N12_K72", [70], 1, 12, 72),
        new("E4_m9-0-1-62_k3_N36_K21", [9, 0, 1, 62], 3, 36, 21),
    ];
}

/// <summary>
/// Each grouped-GEMM kernel alone against a float64 host product: every layout x dtype x candidate configuration x
/// odd shape x row mode (gather / scatter / scale). Outputs are poisoned (0xFF = NaN) before each run, so an element
/// the kernel forgets fails; the first mismatch is reported as (row, column) with its expert and tile.
/// </summary>
[TestClass]
public sealed class GroupedGemmGpuTests
{
    // forward: (aRows, cRows, scaled)
    internal static readonly (RowSource, RowTarget, bool)[] ForwardModes =
    [
        (RowSource.Identity, RowTarget.Identity, false),
        (RowSource.Identity, RowTarget.Identity, true),
        (RowSource.GatherToken, RowTarget.Identity, false),  // permute_x
        (RowSource.Gather, RowTarget.Identity, false),
        (RowSource.Identity, RowTarget.Scatter, true),       // permute_y + fuse_mul_post
    ];

    internal static readonly (RowSource, RowTarget)[] DataModes =
    [
        (RowSource.Identity, RowTarget.Identity),
        (RowSource.Gather, RowTarget.Identity),              // dY loaded permuted (forward used permute_y)
        (RowSource.Identity, RowTarget.Scatter),             // dX stored in token-slot order (forward used permute_x)
    ];

    internal static readonly (RowSource, RowSource)[] WeightModes =
    [
        (RowSource.Identity, RowSource.Identity),
        (RowSource.Gather, RowSource.Identity),              // dY gathered (permute_y)
        (RowSource.Identity, RowSource.GatherToken),         // X gathered by token (permute_x)
        (RowSource.Gather, RowSource.GatherToken),
    ];

    private static readonly ScalarType[] Dtypes = [ScalarType.BFloat16, ScalarType.Float16, ScalarType.Float32];

    /// <summary>Every candidate of every dtype, plus the SIMT kernel forced for bf16/fp16.</summary>
    private static IEnumerable<(ScalarType, GemmConfig)> DtypeConfigs(GroupedGemmLayout layout) =>
        Dtypes.SelectMany(t => GroupedGemmSpecs.CandidateConfigs(layout, t).Append(GemmConfig.Ffma64x64).Distinct().Select(c => (t, c)));

    /// <summary>(dtype, config name, case name) rows of a layout: aligned cases x every config of the layout;
    /// unaligned cases x {default, FFMA}.</summary>
    private static IEnumerable<(ScalarType, string, string)> Grid(GroupedGemmLayout layout) =>
        (from dc in DtypeConfigs(layout) from gc in GemmCase.All select (dc.Item1, dc.Item2.Name, gc.Name))
        .Concat(from t in Dtypes from cfg in new[] { DefaultName, GemmConfig.Ffma64x64.Name } from gc in GemmCase.Unaligned
                select (t, cfg, gc.Name));

    private const string DefaultName = "default";

    public static IEnumerable<object[]> ForwardRows() =>
        from g in Grid(GroupedGemmLayout.ForwardNT) from m in Enumerable.Range(0, ForwardModes.Length) select new object[] { g.Item1, g.Item2, g.Item3, m };

    public static IEnumerable<object[]> DataRows() =>
        from g in Grid(GroupedGemmLayout.BackwardDataNN) from m in Enumerable.Range(0, DataModes.Length) select new object[] { g.Item1, g.Item2, g.Item3, m };

    public static IEnumerable<object[]> WeightRows() =>
        from g in Grid(GroupedGemmLayout.BackwardWeightTN) from m in Enumerable.Range(0, WeightModes.Length) select new object[] { g.Item1, g.Item2, g.Item3, m };

    public static string RowName(System.Reflection.MethodInfo method, object[] row) =>
        $"{method.Name}({((ScalarType)row[0]).ShortName()}, {row[1]}, {row[2]}, mode {row[3]})";

    private static GemmConfig? Config(ScalarType dtype, string name) => name == DefaultName ? null
        : Enum.GetValues<GroupedGemmLayout>().SelectMany(l => GroupedGemmSpecs.CandidateConfigs(l, dtype))
            .Append(GemmConfig.Ffma64x64).First(c => c.Name == name);

    private static GemmCase Case(string name) => GemmCase.All.Concat(GemmCase.Unaligned).Single(c => c.Name == name);

    // ============================================================================================== tests

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DynamicData(nameof(ForwardRows), DynamicDataDisplayName = nameof(RowName))]
    public void ForwardNT_MatchesFloat64(ScalarType dtype, string configName, string caseName, int mode)
    {
        CudaContext ctx = GpuTest.RequireContext();
        RunForward(ctx, GroupedGemm.For(ctx), dtype, Config(dtype, configName), Case(caseName), ForwardModes[mode], seed: 11 + mode);
    }

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DynamicData(nameof(DataRows), DynamicDataDisplayName = nameof(RowName))]
    public void BackwardDataNN_MatchesFloat64(ScalarType dtype, string configName, string caseName, int mode)
    {
        CudaContext ctx = GpuTest.RequireContext();
        RunBackwardData(ctx, GroupedGemm.For(ctx), dtype, Config(dtype, configName), Case(caseName), DataModes[mode], seed: 23 + mode);
    }

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DynamicData(nameof(WeightRows), DynamicDataDisplayName = nameof(RowName))]
    public void BackwardWeightTN_MatchesFloat64(ScalarType dtype, string configName, string caseName, int mode)
    {
        CudaContext ctx = GpuTest.RequireContext();
        RunBackwardWeight(ctx, GroupedGemm.For(ctx), dtype, Config(dtype, configName), Case(caseName), WeightModes[mode], seed: 37 + mode,
            checkDeterminism: false);
    }

    /// <summary>The persistent scheduler with a grid far smaller than the tile count: each CTA walks many tiles and
    /// crosses experts (including empty ones) incrementally.</summary>
    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DataRow(ScalarType.BFloat16, 1)]
    [DataRow(ScalarType.BFloat16, 3)]
    [DataRow(ScalarType.Float16, 7)]
    [DataRow(ScalarType.Float32, 1)]
    [DataRow(ScalarType.Float32, 5)]
    public void PersistentGrid_SmallGridsWalkEveryTile(ScalarType dtype, int gridLimit)
    {
        CudaContext ctx = GpuTest.RequireContext();
        var gemm = new GroupedGemm(ctx) { GridLimitForTesting = gridLimit };
        GemmConfig cfg = GroupedGemmSpecs.CandidateConfigs(dtype)[^1];
        GemmCase c = GemmCase.All[2];
        RunForward(ctx, gemm, dtype, cfg, c, ForwardModes[4], seed: 101);
        RunBackwardData(ctx, gemm, dtype, cfg, c, DataModes[2], seed: 102);
        RunBackwardWeight(ctx, gemm, dtype, cfg, c, WeightModes[3], seed: 103, checkDeterminism: false);
    }

    /// <summary>dW is bit-identical across runs and grid sizes (fixed reduction order, no atomics).</summary>
    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DataRow(ScalarType.BFloat16)]
    [DataRow(ScalarType.Float32)]
    public void BackwardWeightTN_IsDeterministic(ScalarType dtype)
    {
        CudaContext ctx = GpuTest.RequireContext();
        GemmConfig cfg = GroupedGemmSpecs.CandidateConfigs(dtype)[0];
        RunBackwardWeight(ctx, GroupedGemm.For(ctx), dtype, cfg, GemmCase.All[3], WeightModes[3], seed: 55, checkDeterminism: true);
    }

    /// <summary>A null config picks a default specialisation that gives the same result.</summary>
    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DataRow(ScalarType.BFloat16)]
    [DataRow(ScalarType.Float16)]
    [DataRow(ScalarType.Float32)]
    public void NullConfig_UsesADefault(ScalarType dtype)
    {
        CudaContext ctx = GpuTest.RequireContext();
        RunForward(ctx, GroupedGemm.For(ctx), dtype, null, GemmCase.All[3], ForwardModes[2], seed: 77);
    }

    // ============================================================================================== runners

    internal static void RunForward(CudaContext ctx, GroupedGemm gemm, ScalarType dtype, GemmConfig? cfg, GemmCase c,
        (RowSource A, RowTarget C, bool Scaled) mode, int seed)
    {
        var rng = new Random(seed);
        int[] gather = Permutation(c.Rows, rng);
        int aRows = mode.A == RowSource.GatherToken ? c.Tokens : c.Rows;
        float[] a = HostData.Random(dtype, (long)aRows * c.K, rng);
        float[] w = HostData.Random(dtype, (long)c.Experts * c.N * c.K, rng);
        float[] scale = mode.Scaled ? HostData.Random(dtype, c.Rows, rng, 0.1, 1.0) : [];

        var expected = new double[(long)c.Rows * c.N];
        ForEachRow(c, (e, r) =>
        {
            int ar = Source(mode.A, r, gather, c.TopK), cr = mode.C == RowTarget.Scatter ? gather[r] : r;
            double s = mode.Scaled ? scale[gather[r]] : 1.0;
            for (int n = 0; n < c.N; n++)
            {
                double acc = 0;
                long wo = ((long)e * c.N + n) * c.K, ao = (long)ar * c.K;
                for (int k = 0; k < c.K; k++) acc += (double)a[ao + k] * w[wo + k];
                expected[(long)cr * c.N + n] = s * acc;
            }
        });

        using var stream = new CudaStream(ctx);
        using DeviceBuffer<int> dm = Upload(ctx, c.MSizes);
        using DeviceBuffer<int> dg = Upload(ctx, gather);
        using DeviceBuffer<byte> da = HostData.Upload(ctx, dtype, a);
        using DeviceBuffer<byte> dw = HostData.Upload(ctx, dtype, w);
        using DeviceBuffer<byte> ds = HostData.Upload(ctx, dtype, scale);
        using var dc = new DeviceBuffer<byte>(ctx, (long)c.Rows * c.N * dtype.SizeOf());
        dc.FillBytes(0xFF, stream);
        gemm.ForwardNT(stream, dtype, cfg, da, dw, dc, new GroupedRows(dm.DevicePointer, dg.DevicePointer, c.Rows, c.Experts, c.TopK),
            c.N, c.K, mode.A, mode.C, mode.Scaled ? ds : DeviceRange.Null);
        stream.Synchronize();
        float[] actual = HostData.Download(dtype, dc);
        // output row o is expert-ordered row r (identity) or row with gather[r] = o (scatter)
        int[] rowOfOutput = mode.C == RowTarget.Scatter ? Inverse(gather) : Identity(c.Rows);
        AssertClose($"ForwardNT {dtype.ShortName()} {cfg?.Name ?? "default"} {c.Name} {mode}", dtype, actual, expected, c.N,
            o => Describe(c, rowOfOutput[o], cfg?.BlockM));
    }

    internal static void RunBackwardData(CudaContext ctx, GroupedGemm gemm, ScalarType dtype, GemmConfig? cfg, GemmCase c,
        (RowSource A, RowTarget C) mode, int seed)
    {
        var rng = new Random(seed);
        int[] gather = Permutation(c.Rows, rng);
        int aRows = mode.A == RowSource.GatherToken ? c.Tokens : c.Rows;
        float[] a = HostData.Random(dtype, (long)aRows * c.N, rng);
        float[] w = HostData.Random(dtype, (long)c.Experts * c.N * c.K, rng);

        var expected = new double[(long)c.Rows * c.K];
        var acc = new double[c.K];
        ForEachRow(c, (e, r) =>
        {
            int ar = Source(mode.A, r, gather, c.TopK), cr = mode.C == RowTarget.Scatter ? gather[r] : r;
            Array.Clear(acc);
            for (int n = 0; n < c.N; n++)
            {
                double av = a[(long)ar * c.N + n];
                long wo = ((long)e * c.N + n) * c.K;
                for (int k = 0; k < c.K; k++) acc[k] += av * w[wo + k];
            }
            acc.CopyTo(expected, (long)cr * c.K);
        });

        using var stream = new CudaStream(ctx);
        using DeviceBuffer<int> dm = Upload(ctx, c.MSizes);
        using DeviceBuffer<int> dg = Upload(ctx, gather);
        using DeviceBuffer<byte> da = HostData.Upload(ctx, dtype, a);
        using DeviceBuffer<byte> dw = HostData.Upload(ctx, dtype, w);
        using var dc = new DeviceBuffer<byte>(ctx, (long)c.Rows * c.K * dtype.SizeOf());
        dc.FillBytes(0xFF, stream);
        gemm.BackwardDataNN(stream, dtype, cfg, da, dw, dc, new GroupedRows(dm.DevicePointer, dg.DevicePointer, c.Rows, c.Experts, c.TopK),
            c.N, c.K, mode.A, mode.C);
        stream.Synchronize();
        float[] actual = HostData.Download(dtype, dc);
        int[] rowOfOutput = mode.C == RowTarget.Scatter ? Inverse(gather) : Identity(c.Rows);
        AssertClose($"BackwardDataNN {dtype.ShortName()} {cfg?.Name ?? "default"} {c.Name} {mode}", dtype, actual, expected, c.K,
            o => Describe(c, rowOfOutput[o], cfg?.BlockM));
    }

    internal static void RunBackwardWeight(CudaContext ctx, GroupedGemm gemm, ScalarType dtype, GemmConfig? cfg, GemmCase c,
        (RowSource A, RowSource B) mode, int seed, bool checkDeterminism)
    {
        var rng = new Random(seed);
        int[] gather = Permutation(c.Rows, rng);
        int aRows = mode.A == RowSource.GatherToken ? c.Tokens : c.Rows;
        int bRows = mode.B == RowSource.GatherToken ? c.Tokens : c.Rows;
        float[] a = HostData.Random(dtype, (long)aRows * c.N, rng);
        float[] b = HostData.Random(dtype, (long)bRows * c.K, rng);

        var expected = new double[(long)c.Experts * c.N * c.K]; // experts without rows stay 0
        ForEachRow(c, (e, r) =>
        {
            int ar = Source(mode.A, r, gather, c.TopK), br = Source(mode.B, r, gather, c.TopK);
            for (int n = 0; n < c.N; n++)
            {
                double av = a[(long)ar * c.N + n];
                long o = ((long)e * c.N + n) * c.K, bo = (long)br * c.K;
                for (int k = 0; k < c.K; k++) expected[o + k] += av * b[bo + k];
            }
        });

        using var stream = new CudaStream(ctx);
        using DeviceBuffer<int> dm = Upload(ctx, c.MSizes);
        using DeviceBuffer<int> dg = Upload(ctx, gather);
        using DeviceBuffer<byte> da = HostData.Upload(ctx, dtype, a);
        using DeviceBuffer<byte> db = HostData.Upload(ctx, dtype, b);
        using var dw = new DeviceBuffer<byte>(ctx, (long)c.Experts * c.N * c.K * dtype.SizeOf());
        var rows = new GroupedRows(dm.DevicePointer, dg.DevicePointer, c.Rows, c.Experts, c.TopK);
        dw.FillBytes(0xFF, stream);
        gemm.BackwardWeightTN(stream, dtype, cfg, da, db, dw, rows, c.N, c.K, mode.A, mode.B);
        stream.Synchronize();
        byte[] first = dw.ToArray();
        float[] actual = HostData.FromBytes(dtype, first);
        AssertClose($"BackwardWeightTN {dtype.ShortName()} {cfg?.Name ?? "default"} {c.Name} {mode}", dtype, actual, expected, c.K,
            o => $"expert {o / c.N} (m={c.MSizes[o / c.N]}), n {o % c.N}" + (cfg is null ? "" : $" (n-tile {o % c.N / cfg.BlockM}, row {o % c.N % cfg.BlockM} in tile)"));
        if (!checkDeterminism) return;
        var small = new GroupedGemm(ctx) { GridLimitForTesting = 2 };
        for (int run = 0; run < 3; run++)
        {
            dw.FillBytes(0xFF, stream);
            (run == 2 ? small : gemm).BackwardWeightTN(stream, dtype, cfg, da, db, dw, rows, c.N, c.K, mode.A, mode.B);
            stream.Synchronize();
            byte[] again = dw.ToArray();
            int diff = first.AsSpan().CommonPrefixLength(again);
            Assert.AreEqual(first.Length, diff, $"run {run + 1} differs from run 0 at byte {diff} (element {diff / dtype.SizeOf()})");
        }
    }

    // ============================================================================================== helpers

    internal static void ForEachRow(GemmCase c, Action<int, int> body)
    {
        int r = 0;
        for (int e = 0; e < c.Experts; e++)
            for (int i = 0; i < c.MSizes[e]; i++, r++) body(e, r);
    }

    private static int Source(RowSource mode, int r, int[] gather, int topK) => mode switch
    {
        RowSource.Gather => gather[r],
        RowSource.GatherToken => gather[r] / topK,
        _ => r,
    };

    internal static int[] Permutation(int n, Random rng)
    {
        int[] p = Identity(n);
        rng.Shuffle(p);
        return p;
    }

    private static int[] Identity(int n) => Enumerable.Range(0, n).ToArray();

    private static int[] Inverse(int[] p)
    {
        var inv = new int[p.Length];
        for (int i = 0; i < p.Length; i++) inv[p[i]] = i;
        return inv;
    }

    internal static DeviceBuffer<int> Upload(CudaContext ctx, int[] values)
    {
        var buf = new DeviceBuffer<int>(ctx, Math.Max(values.Length, 1));
        if (values.Length > 0) buf.CopyFromHost(values);
        return buf;
    }

    /// <summary>"expert e (m=…), local row i (m-tile t, row j in tile)" for expert-ordered row r.</summary>
    private static string Describe(GemmCase c, int r, int? blockM)
    {
        int e = 0, off = 0;
        while (e < c.Experts - 1 && r >= off + c.MSizes[e]) off += c.MSizes[e++];
        int local = r - off;
        return $"row r={r}: expert {e} (m={c.MSizes[e]}), local row {local}" + (blockM is { } bm ? $" (m-tile {local / bm}, row {local % bm} in tile)" : "");
    }

    private static void AssertClose(string name, ScalarType dtype, float[] actual, double[] expected, int columns, Func<int, string> rowInfo)
    {
        double tol = Tolerance.For(dtype);
        var expectedF = expected.Select(x => (float)x).ToArray();
        Comparison cmp = Numerics.Compare(name, actual, expectedF, tol);
        if (cmp.AllClose && cmp.RelativeNormError <= tol) return;
        string where = "";
        if (cmp.FirstMismatch >= 0)
        {
            int row = (int)(cmp.FirstMismatch / columns), col = (int)(cmp.FirstMismatch % columns);
            where = string.Create(CultureInfo.InvariantCulture,
                $"\nfirst mismatch at output (row {row}, col {col}) = {rowInfo(row)}, column tile (BN=64: {col / 64}, BN=128: {col / 128}); actual {actual[cmp.FirstMismatch]:G6} expected {expected[cmp.FirstMismatch]:G6}");
            // summarise which output rows fail (helps tell a fragment-layout bug from a bounds bug)
            var badRows = new SortedSet<int>();
            for (int i = 0; i < actual.Length && badRows.Count < 12; i++)
                if (!(Math.Abs(actual[i] - expected[i]) <= tol + tol * Math.Abs(expected[i]))) badRows.Add(i / columns);
            where += $"\nfailing output rows (first 12): {string.Join(", ", badRows)}";
        }
        Assert.Fail($"{cmp}{where}");
    }
}

/// <summary>Host-side storage of test tensors: floats already rounded to the dtype, bytes for upload.</summary>
internal static class HostData
{
    public static float Round(ScalarType t, double v) => t switch
    {
        ScalarType.BFloat16 => (float)BFloat16.FromBits(BFloat16.RoundToBits((float)v)),
        ScalarType.Float16 => (float)(Half)(float)v,
        _ => (float)v,
    };

    /// <summary>Uniform in [lo, hi), rounded to <paramref name="t"/>.</summary>
    public static float[] Random(ScalarType t, long count, Random rng, double lo = -1.0, double hi = 1.0)
    {
        var v = new float[count];
        for (long i = 0; i < count; i++) v[i] = Round(t, lo + (hi - lo) * rng.NextDouble());
        return v;
    }

    public static DeviceBuffer<byte> Upload(CudaContext ctx, ScalarType t, float[] values)
    {
        int es = t.SizeOf();
        var bytes = new byte[Math.Max(values.Length, 1) * es];
        for (int i = 0; i < values.Length; i++)
        {
            Span<byte> at = bytes.AsSpan(i * es, es);
            switch (t)
            {
                case ScalarType.BFloat16: BinaryPrimitives.WriteUInt16LittleEndian(at, BFloat16.RoundToBits(values[i])); break;
                case ScalarType.Float16: BinaryPrimitives.WriteUInt16LittleEndian(at, BitConverter.HalfToUInt16Bits((Half)values[i])); break;
                default: BinaryPrimitives.WriteSingleLittleEndian(at, values[i]); break;
            }
        }
        var buf = new DeviceBuffer<byte>(ctx, bytes.Length);
        buf.CopyFromHost(bytes);
        return buf;
    }

    public static float[] Download(ScalarType t, DeviceBuffer<byte> buffer) => FromBytes(t, buffer.ToArray());

    public static float[] FromBytes(ScalarType t, ReadOnlySpan<byte> bytes)
    {
        int es = t.SizeOf();
        var v = new float[bytes.Length / es];
        for (int i = 0; i < v.Length; i++)
        {
            ReadOnlySpan<byte> at = bytes.Slice(i * es, es);
            v[i] = t switch
            {
                ScalarType.BFloat16 => (float)BFloat16.FromBits(BinaryPrimitives.ReadUInt16LittleEndian(at)),
                ScalarType.Float16 => (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(at)),
                _ => BinaryPrimitives.ReadSingleLittleEndian(at),
            };
        }
        return v;
    }
}
