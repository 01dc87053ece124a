using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Blocks.Benchmarking;

/// <summary>One timed grouped GEMM of <see cref="GroupedGemmBenchmark"/>.</summary>
/// <param name="Tokens">T.</param>
/// <param name="Gemm">gemm1 (X[token] . W_gate_up^T, N = 2I, K = H), gemm2 (act . W_down^T scaled and scattered, N = H,
/// K = I), gemm2-dx (dY[gathered] . W_down: NN, reduction H, output I), gemm1-dx (dG1 . W_gate_up: NN, reduction 2I,
/// output H, scattered), gemm1-dw (dW_gate_up = Σ dG1ᵀ X[token]: TN, reduction = the expert's rows), gemm2-dw
/// (dW_down = Σ dY[gathered]ᵀ act: TN), router (the router logits X . W_router^T: one group of T rows, N = E, K = H, as
/// the block runs it from T = 257 on); N and K are the weight's dims [E, N, K].</param>
/// <param name="Impl">ours, cublas-grouped (cublasGemmGroupedBatchedEx over the same expert rows, A pre-gathered),
/// cublas-dense (one cublasGemmEx [R, N, K]: the same FLOPs with no grouping).</param>
/// <param name="Config">Our tile configuration (name carries the path: sm90a_... or the sm_80 tile), or "-".</param>
/// <param name="Path">sm90a | sm80 | simt | cublas.</param>
/// <param name="Rows">R = T*k expert rows (router: T).</param>
/// <param name="N">Output columns.</param>
/// <param name="K">Reduction.</param>
/// <param name="MedianMs">Median of the CUDA-event times of one launch, ms.</param>
/// <param name="Tflops">2·R·N·K / median time.</param>
public sealed record GemmBenchRow(int Tokens, string Gemm, string Impl, string Config, string Path, int Rows, int N, int K,
    double MedianMs, double Tflops);

/// <summary>The rows of one <see cref="GroupedGemmBenchmark"/> run and the card they ran on.</summary>
public sealed record GemmBenchReport(string Device, string Config, string DType, IReadOnlyList<GemmBenchRow> Rows)
{
    public string ToJson() => JsonSerializer.Serialize(this, GemmBenchJsonContext.Default.GemmBenchReport);
}

/// <summary>
/// <c>bench --gemm</c>: each expert GEMM of the block alone at the block's shapes (routing: each token picks top-k
/// distinct experts uniformly at random, seeded), every candidate configuration of ours (sm_80 and, on a 9.0 card,
/// sm_90a), beside cublasGemmGroupedBatchedEx over the same expert rows and one dense cublasGemmEx of equal FLOPs;
/// median of CUDA-event-timed launches after warm-up, TFLOP/s = 2·R·N·K / time.
/// </summary>
public sealed class GroupedGemmBenchmark(CudaContext context, MoeConfig config, ScalarType dtype, int seed = 1234)
{
    private const int Warmup = 3, Replays = 20;

    public GemmBenchReport Run(IReadOnlyList<int> tokens, Action<GemmBenchRow>? progress = null)
    {
        if (dtype == ScalarType.Float32) throw new ArgumentException("bench --gemm times the bf16/fp16 tensor-core kernels.", nameof(dtype));
        var rows = new List<GemmBenchRow>();
        foreach (int t in tokens)
            foreach (GemmBenchRow row in RunOne(t))
            {
                rows.Add(row);
                progress?.Invoke(row);
            }
        return new GemmBenchReport(context.Name, config.ToString(), dtype.ShortName(), rows);
    }

    private IEnumerable<GemmBenchRow> RunOne(int t)
    {
        int h = config.HiddenSize, i = config.IntermediateSize, e = config.NumExperts, k = config.TopK;
        int r = t * k, es = dtype.SizeOf();
        var rng = new Random(seed + t);
        (int[] mSizes, int[] gather) = Route(t, e, k, rng);
        using var stream = new CudaStream(context);
        using DeviceBuffer<int> dm = DeviceBuffer<int>.FromHost(context, mSizes);
        using DeviceBuffer<int> dg = DeviceBuffer<int>.FromHost(context, gather);
        using DeviceBuffer<byte> x = Random(rng, (long)t * h);               // X [T, H]
        using DeviceBuffer<byte> xp = Random(rng, (long)r * h);              // X gathered [R, H] (cuBLAS operand)
        using DeviceBuffer<byte> w1 = Random(rng, (long)e * 2 * i * h);      // W_gate_up [E, 2I, H]
        using DeviceBuffer<byte> g1 = new(context, (long)r * 2 * i * es);   // [R, 2I]
        using DeviceBuffer<byte> act = Random(rng, (long)r * i);             // [R, I]
        using DeviceBuffer<byte> w2 = Random(rng, (long)e * h * i);          // W_down [E, H, I]
        using DeviceBuffer<byte> g2 = new(context, (long)r * h * es);       // [R, H]
        using DeviceBuffer<byte> scale = Random(rng, r);                     // routing weights [R]
        var grouped = new GroupedRows(dm.DevicePointer, dg.DevicePointer, r, e, k);
        GroupedGemm gemm = GroupedGemm.For(context);
        using var cublas = new CublasHandle(context);
        cublas.SetStream(stream);

        // NN operands: dY of GEMM2 is g2 [R, H] (read gathered), dG1 is g1 [R, 2I]; outputs act [R, I] and xp [R, H]
        var shapes = new (string Name, GroupedGemmLayout Layout, int N, int K, DeviceRange A, DeviceRange AGathered, DeviceRange W, DeviceRange C, RowSource ARows, RowTarget CRows, DeviceRange Scale)[]
        {
            ("gemm1", GroupedGemmLayout.ForwardNT, 2 * i, h, x, xp, w1, g1, RowSource.GatherToken, RowTarget.Identity, DeviceRange.Null),
            ("gemm2", GroupedGemmLayout.ForwardNT, h, i, act, act, w2, g2, RowSource.Identity, RowTarget.Scatter, scale),
            ("gemm2-dx", GroupedGemmLayout.BackwardDataNN, h, i, g2, g2, w2, act, RowSource.Gather, RowTarget.Identity, DeviceRange.Null),
            ("gemm1-dx", GroupedGemmLayout.BackwardDataNN, 2 * i, h, g1, g1, w1, xp, RowSource.Identity, RowTarget.Scatter, DeviceRange.Null),
        };
        foreach (var s in shapes)
        {
            double flops = 2.0 * r * s.N * s.K;
            bool nt = s.Layout == GroupedGemmLayout.ForwardNT;
            foreach (GemmConfig cfg in gemm.Candidates(s.Layout, dtype))
            {
                double ms = Time(stream, () =>
                {
                    if (nt) gemm.ForwardNT(stream, dtype, cfg, s.A, s.W, s.C, grouped, s.N, s.K, s.ARows, s.CRows, s.Scale);
                    else gemm.BackwardDataNN(stream, dtype, cfg, s.A, s.W, s.C, grouped, s.N, s.K, s.ARows, s.CRows);
                });
                string path = GroupedGemmSpecs.MathOf(cfg) switch { GemmMath.WgmmaSm90a => "sm90a", GemmMath.MmaSm80 => "sm80", _ => "simt" };
                yield return new GemmBenchRow(t, s.Name, "ours", cfg.Name, path, r, s.N, s.K, ms, flops / ms / 1e9);
            }
            using var ptrs = CublasGroupedPointers(mSizes, s.W, s.AGathered, s.C, nt ? s.K : s.N, nt ? s.N : s.K, s.N * s.K);
            double grp = Time(stream, () => CublasGrouped(cublas, mSizes, ptrs, nt, s.N, s.K));
            yield return new GemmBenchRow(t, s.Name, "cublas-grouped", "-", "cublas", r, s.N, s.K, grp, flops / grp / 1e9);
            // dense, same FLOPs, column-major terms: NT C^T [N, R] = W^T-view . A^T; NN C^T [K, R] = W-view [K, N] . A^T [N, R]
            CudaDataType ct = dtype.ToCudaDataType();
            double dense = Time(stream, () => cublas.GemmEx(nt ? CublasOperation.Transpose : CublasOperation.None, CublasOperation.None,
                nt ? s.N : s.K, r, nt ? s.K : s.N, 1.0, s.W.Pointer, ct, s.K, s.AGathered.Pointer, ct, nt ? s.K : s.N,
                0.0, s.C.Pointer, ct, nt ? s.N : s.K, CublasComputeType.Compute32F));
            yield return new GemmBenchRow(t, s.Name, "cublas-dense", "-", "cublas", r, s.N, s.K, dense, flops / dense / 1e9);
        }

        // TN (weight gradients, reduction = the expert's rows): dWgu [E, 2I, H] = Σ dG1ᵀ · X[token] (g1 as dG1, X by
        // token), dWd [E, H, I] = Σ dG2[gathered]ᵀ · act (g2 as dG2); cuBLAS reads the pre-gathered xp / g2 rows
        using DeviceBuffer<byte> dw1 = new(context, (long)e * 2 * i * h * es);
        using DeviceBuffer<byte> dw2 = new(context, (long)e * h * i * es);
        var weightShapes = new (string Name, int N, int K, DeviceRange A, DeviceRange B, DeviceRange BGathered, DeviceRange DW, RowSource ARows, RowSource BRows)[]
        {
            ("gemm1-dw", 2 * i, h, g1, x, xp, dw1, RowSource.Identity, RowSource.GatherToken),
            ("gemm2-dw", h, i, g2, act, act, dw2, RowSource.Gather, RowSource.Identity),
        };
        foreach (var s in weightShapes)
        {
            double flops = 2.0 * r * s.N * s.K;
            foreach (GemmConfig cfg in gemm.Candidates(GroupedGemmLayout.BackwardWeightTN, dtype))
            {
                double ms = Time(stream, () => gemm.BackwardWeightTN(stream, dtype, cfg, s.A, s.B, s.DW, grouped, s.N, s.K, s.ARows, s.BRows));
                string path = GroupedGemmSpecs.MathOf(cfg) switch { GemmMath.WgmmaSm90a => "sm90a", GemmMath.MmaSm80 => "sm80", _ => "simt" };
                yield return new GemmBenchRow(t, s.Name, "ours", cfg.Name, path, r, s.N, s.K, ms, flops / ms / 1e9);
            }
            // column-major: dW_e^T [K, N] (ld K) = B_e [K, m_e] (ld K) . A_e^T (A_e [N, m_e], ld N)
            using var ptrs = CublasWeightPointers(mSizes, s.BGathered, s.A, s.DW, s.N, s.K);
            double grp = Time(stream, () => CublasWeightGrouped(cublas, mSizes, ptrs, s.N, s.K));
            yield return new GemmBenchRow(t, s.Name, "cublas-grouped", "-", "cublas", r, s.N, s.K, grp, flops / grp / 1e9);
            CudaDataType ct = dtype.ToCudaDataType();
            double dense = Time(stream, () => cublas.GemmEx(CublasOperation.None, CublasOperation.Transpose, s.K, s.N, r,
                1.0, s.BGathered.Pointer, ct, s.K, s.A.Pointer, ct, s.N, 0.0, s.DW.Pointer, ct, s.K, CublasComputeType.Compute32F));
            yield return new GemmBenchRow(t, s.Name, "cublas-dense", "-", "cublas", r, s.N, s.K, dense, flops / dense / 1e9);
        }

        // router logits L [T, E] = X . Wr^T: the block's RouterForward (one group of T rows, no gather), every candidate
        // beside one dense cublasGemmEx (the same GEMM: one group needs no grouped reference); drawn last, so the
        // expert GEMMs' inputs stay those of the same seed without this row
        using DeviceBuffer<int> routerSizes = DeviceBuffer<int>.FromHost(context, [t]);
        using DeviceBuffer<byte> wr = Random(rng, (long)e * h);             // W_router [E, H] = one weight [1, E, H]
        using DeviceBuffer<byte> logits = new(context, (long)t * e * es);  // [T, E]
        var routerRows = new GroupedRows(routerSizes.DevicePointer, 0, t, 1, 1);
        double routerFlops = 2.0 * t * e * h;
        foreach (GemmConfig cfg in gemm.Candidates(GroupedGemmLayout.ForwardNT, dtype))
        {
            double ms = Time(stream, () => gemm.ForwardNT(stream, dtype, cfg, x, wr, logits, routerRows, e, h, RowSource.Identity, RowTarget.Identity, DeviceRange.Null));
            string path = GroupedGemmSpecs.MathOf(cfg) switch { GemmMath.WgmmaSm90a => "sm90a", GemmMath.MmaSm80 => "sm80", _ => "simt" };
            yield return new GemmBenchRow(t, "router", "ours", cfg.Name, path, t, e, h, ms, routerFlops / ms / 1e9);
        }
        // column-major: L^T [E, T] = (Wr [E, H] row-major = [H, E] col-major)^T . X^T [H, T]
        CudaDataType rt = dtype.ToCudaDataType();
        double routerDense = Time(stream, () => cublas.GemmEx(CublasOperation.Transpose, CublasOperation.None, e, t, h, 1.0,
            wr.DevicePointer, rt, h, x.DevicePointer, rt, h, 0.0, logits.DevicePointer, rt, e, CublasComputeType.Compute32F));
        yield return new GemmBenchRow(t, "router", "cublas-dense", "-", "cublas", t, e, h, routerDense, routerFlops / routerDense / 1e9);
    }

    /// <summary>Device pointer arrays [B_e | A_e | dW_e] of the grouped cuBLAS weight gradient: B rows of K elements,
    /// A rows of N, dW[e] [N, K].</summary>
    private DeviceBuffer<ulong> CublasWeightPointers(int[] mSizes, DeviceRange b, DeviceRange a, DeviceRange dw, int n, int k)
    {
        int e = mSizes.Length, es = dtype.SizeOf();
        var host = new ulong[3 * e];
        long off = 0;
        for (int x = 0; x < e; x++)
        {
            host[x] = b.Pointer + (ulong)(off * k * es);
            host[e + x] = a.Pointer + (ulong)(off * n * es);
            host[2 * e + x] = dw.Pointer + (ulong)((long)x * n * k * es);
            off += mSizes[x];
        }
        return DeviceBuffer<ulong>.FromHost(context, host);
    }

    /// <summary>One group per expert: dW_e^T [K, N] = B_e [K, m_e] . (A_e [N, m_e])^T, column-major.</summary>
    private void CublasWeightGrouped(CublasHandle cublas, int[] mSizes, DeviceBuffer<ulong> ptrs, int n, int k)
    {
        int e = mSizes.Length;
        CudaDataType ct = dtype.ToCudaDataType();
        var ta = new CublasOperation[e]; Array.Fill(ta, CublasOperation.None);
        var tb = new CublasOperation[e]; Array.Fill(tb, CublasOperation.Transpose);
        var ms = new int[e]; Array.Fill(ms, k);
        var ns = new int[e]; Array.Fill(ns, n);
        var lda = new int[e]; Array.Fill(lda, k);
        var ldb = new int[e]; Array.Fill(ldb, n);
        var one = new float[e]; Array.Fill(one, 1f);
        var zero = new float[e];
        var size = new int[e]; Array.Fill(size, 1);
        cublas.GemmGroupedBatchedEx(ta, tb, ms, ns, mSizes, one, ptrs.DevicePointer, ct, lda, ptrs.PointerAt(e), ct, ldb, zero,
            ptrs.PointerAt(2 * e), ct, lda, size, CublasComputeType.Compute32F);
    }

    /// <summary>Each token picks k distinct experts; rows in expert order; gather[r] = token slot t*k + j.</summary>
    private static (int[] MSizes, int[] Gather) Route(int tokens, int experts, int k, Random rng)
    {
        var byExpert = new List<int>[experts];
        for (int x = 0; x < experts; x++) byExpert[x] = [];
        int[] pool = Enumerable.Range(0, experts).ToArray();
        for (int t = 0; t < tokens; t++)
        {
            rng.Shuffle(pool);
            for (int j = 0; j < k; j++) byExpert[pool[j]].Add(t * k + j);
        }
        return (byExpert.Select(l => l.Count).ToArray(), byExpert.SelectMany(l => l).ToArray());
    }

    private DeviceBuffer<byte> Random(Random rng, long count)
    {
        var values = new float[count];
        for (long n = 0; n < count; n++) values[n] = (float)(rng.NextDouble() * 2 - 1);
        var bytes = new byte[count * dtype.SizeOf()];
        StorageConvert.ToStorageParallel(values, dtype, bytes);
        return DeviceBuffer<byte>.FromHost(context, bytes);
    }

    /// <summary>Device pointer arrays [W_e | A_e | C_e] (experts in order) for the grouped cuBLAS call: A rows of
    /// <paramref name="aRow"/> elements, C rows of <paramref name="cRow"/>, W[e] of <paramref name="wElems"/>.</summary>
    private DeviceBuffer<ulong> CublasGroupedPointers(int[] mSizes, DeviceRange w, DeviceRange a, DeviceRange c, int aRow, int cRow, long wElems)
    {
        int e = mSizes.Length, es = dtype.SizeOf();
        var host = new ulong[3 * e];
        long off = 0;
        for (int x = 0; x < e; x++)
        {
            host[x] = w.Pointer + (ulong)(x * wElems * es);            // W[e] [N, K]
            host[e + x] = a.Pointer + (ulong)(off * aRow * es);        // A rows of e [m_e, aRow]
            host[2 * e + x] = c.Pointer + (ulong)(off * cRow * es);    // C rows of e [m_e, cRow]
            off += mSizes[x];
        }
        return DeviceBuffer<ulong>.FromHost(context, host);
    }

    /// <summary>One group per expert. NT: C_e^T [N, m] = W_e^T-view . A_e^T (op T on W); NN: C_e^T [K, m] = W_e-view [K, N] . A_e^T.</summary>
    private void CublasGrouped(CublasHandle cublas, int[] mSizes, DeviceBuffer<ulong> ptrs, bool nt, int n, int k)
    {
        int e = mSizes.Length;
        CudaDataType ct = dtype.ToCudaDataType();
        var ta = new CublasOperation[e]; Array.Fill(ta, nt ? CublasOperation.Transpose : CublasOperation.None);
        var tb = new CublasOperation[e]; Array.Fill(tb, CublasOperation.None);
        var ms = new int[e]; Array.Fill(ms, nt ? n : k);
        var ks = new int[e]; Array.Fill(ks, nt ? k : n);
        var lda = new int[e]; Array.Fill(lda, k);
        var ld = new int[e]; Array.Fill(ld, nt ? k : n);
        var ldc = new int[e]; Array.Fill(ldc, nt ? n : k);
        var one = new float[e]; Array.Fill(one, 1f);
        var zero = new float[e];
        var size = new int[e]; Array.Fill(size, 1);
        cublas.GemmGroupedBatchedEx(ta, tb, ms, mSizes, ks, one, ptrs.DevicePointer, ct, lda, ptrs.PointerAt(e), ct, ld, zero,
            ptrs.PointerAt(2 * e), ct, ldc, size, CublasComputeType.Compute32F);
    }

    private double Time(CudaStream stream, Action launch)
    {
        for (int w = 0; w < Warmup; w++) launch();
        stream.Synchronize();
        using var start = new CudaEvent(context);
        using var end = new CudaEvent(context);
        var times = new double[Replays];
        for (int n = 0; n < Replays; n++)
        {
            start.Record(stream);
            launch();
            end.Record(stream);
            end.Synchronize();
            times[n] = CudaEvent.ElapsedMilliseconds(start, end);
        }
        return BlockBenchmark.Median(times);
    }

    /// <summary>One line per row, for logs.</summary>
    public static string Line(GemmBenchRow r) => string.Create(CultureInfo.InvariantCulture,
        $"  T={r.Tokens,-6} {r.Gemm} {r.Impl,-15} {r.Config,-26} {r.Path,-6} R={r.Rows} N={r.N} K={r.K}: {r.MedianMs:0.000} ms {r.Tflops,6:0.0} TFLOP/s");
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(GemmBenchReport))]
internal sealed partial class GemmBenchJsonContext : JsonSerializerContext;
