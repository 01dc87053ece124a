using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using MoeNative.Interop;
using MoeNative.Interop.Native;
using static MoeNative.Interop.DeviceRangeChecks;

namespace MoeNative.Ptx;

/// <summary>
/// Grouped GEMMs of a Mixture-of-Experts layer, on hand-written PTX: forward NT, backward-data NN and backward-weight
/// TN. bf16/fp16 run on tensor cores (mma.sync m16n8k16, ldmatrix, cp.async multi-stage pipeline, sm_80+) when N and K
/// are multiples of 8 and every operand is 16-byte aligned; fp32, and bf16/fp16 shapes that are not (e.g. a router
/// GEMM with E = 12), run the SIMT FFMA kernel, which takes any N, K (the tensor-core configuration is then ignored;
/// <see cref="GemmConfig.Ffma64x64"/> forces the SIMT kernel). Every kernel is persistent and walks (expert, tile) from <c>m_sizes</c> in device memory, so a
/// call never synchronises with the host and is CUDA-graph capturable.
/// <para>Legend: E experts, R = T*k expert-ordered rows (expert e owns rows [off[e], off[e]+m_sizes[e]), off the
/// exclusive prefix sum), N and K the weight's dims (W [E,N,K]); gather[r] = token slot p = t*k + j.</para>
/// One instance per <see cref="CudaContext"/> (<see cref="For"/>). Each method validates every argument first
/// (<see cref="ArgumentException"/> naming the parameter and the expected shape), returns early on empty input,
/// then enqueues one launch on the given stream: no synchronisation, no allocation after the first call per
/// specialisation (which JIT-compiles it). Outputs are overwritten, never accumulated.
/// </summary>
public sealed partial class GroupedGemm
{
    private static readonly ConditionalWeakTable<CudaContext, GroupedGemm> Instances = new();

    private readonly ConcurrentDictionary<GroupedGemmSpecKey, LoadedGemm> _loaded = new();
    private readonly Lock _gate = new();

    /// <summary>Use <see cref="For"/>; a second instance for one context works but JITs its own copies.</summary>
    public GroupedGemm(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        Context = context;
    }

    /// <summary>The shared instance of <paramref name="context"/>.</summary>
    public static GroupedGemm For(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return Instances.GetValue(context, c => new GroupedGemm(c));
    }

    public CudaContext Context { get; }

    /// <summary>Test hook: caps the persistent grid (CTAs), so a test can make each CTA walk many tiles. Null = no cap.</summary>
    internal int? GridLimitForTesting { get; init; }

    /// <summary>
    /// Keeps this instance on the sm_80 kernels on a Hopper card: null configurations default to an sm_80 tile and
    /// <see cref="Candidates(GroupedGemmLayout, ScalarType)"/> offers no sm_90a tile (an explicit sm_90a configuration
    /// still runs sm_90a). Defaults to the environment variable MOENATIVE_FORCE_SM80=1, so the whole GPU suite and the
    /// CLI can run either path on one card.
    /// </summary>
    public bool ForceSm80 { get; init; } = ForcedSm80ByEnvironment;

    /// <summary>MOENATIVE_FORCE_SM80 is "1".</summary>
    public static bool ForcedSm80ByEnvironment => Environment.GetEnvironmentVariable("MOENATIVE_FORCE_SM80") == "1";

    /// <summary>
    /// Whether the sm_90a row-tiled kernels load A by TMA (two 64-row boxes of a 2-D map per stage, issued by one
    /// thread) where A's rows are already in expert order (<see cref="RowSource.Identity"/>: GEMM2's act, GEMM1 dX's
    /// dG1, the router's X), instead of the producer warpgroup's 16-byte row copies through its row table. Gathered
    /// rows keep the copies. Defaults to the environment: MOENATIVE_SM90A_TMA_A=0 turns it off (A/B in one process
    /// pair); the outputs are the same bits either way.
    /// </summary>
    public bool RowOperandByTma { get; init; } = RowOperandTmaByEnvironment;

    /// <summary>MOENATIVE_SM90A_TMA_A is not "0".</summary>
    public static bool RowOperandTmaByEnvironment => Environment.GetEnvironmentVariable("MOENATIVE_SM90A_TMA_A") != "0";

    /// <summary>True when this instance runs the sm_90a kernels where they exist: a compute capability 9.0 device
    /// (sm_90a code runs on 9.0 only) and not <see cref="ForceSm80"/>.</summary>
    public bool UsesSm90a => Sm90aAvailable(Context.ComputeCapability) && !ForceSm80;

    /// <summary>Whether sm_90a kernels run on a device of compute capability <paramref name="cc"/> (9.0 exactly).</summary>
    public static bool Sm90aAvailable((int Major, int Minor) cc) => cc == (9, 0);

    /// <summary>Whether the weight-gradient (TN) GEMM should read gathered rows directly rather than a contiguous copy
    /// made first: on the sm_90a path (its producer gathers through a row table at the cost of contiguous rows); the
    /// sm_80 TN kernel gains more from contiguous rows than the copy costs (docs/PERF.md v4, v14).</summary>
    public bool WeightGradientGathersRows => UsesSm90a;

    /// <summary>"sm90a" or "sm80": the path a null configuration of (layout, dtype) takes on this instance's device
    /// for large problems (for info, bench JSON and autotune records; each config name also carries its path).</summary>
    public string PathName(GroupedGemmLayout layout, ScalarType dtype) =>
        UsesSm90a && GroupedGemmSm90aSpecs.Candidates(layout, dtype).Count > 0 ? "sm90a" : "sm80";

    // ============================================================================================== public API

    /// <summary>
    /// Forward: <c>C[c(r), n] = scale(r) · Σ_k A[a(r), k] · W[e(r), n, k]</c>, fp32 accumulation, one rounding to dtype.
    /// <c>a(r)</c> = r | gather[r] | gather[r]/k (<paramref name="aRows"/>), <c>c(r)</c> = r | gather[r]
    /// (<paramref name="cRows"/>), <c>scale(r)</c> = rowScale[gather[r]] when <paramref name="rowScale"/> is not null
    /// (routing weights, fuse_mul_post), else 1. Dense GEMM = one expert.
    /// </summary>
    /// <param name="stream">Stream of this context.</param>
    /// <param name="dtype">Storage dtype of A, W, C and rowScale.</param>
    /// <param name="config">Tile configuration (one of <see cref="Candidates(GroupedGemmLayout, ScalarType, CudaContext)"/>), or null for a
    /// default; ignored (SIMT kernel) when the shape or alignment does not suit the tensor cores.</param>
    /// <param name="a">[R, K] (Identity, Gather) or [R/k, K] (GatherToken), dtype.</param>
    /// <param name="w">[E, N, K] dtype.</param>
    /// <param name="c">[R, N] dtype, out (every row written).</param>
    /// <param name="rows">m_sizes [E] i32, gather [R] i32, R, E, k.</param>
    /// <param name="n">N (output columns).</param>
    /// <param name="k">K (reduction).</param>
    /// <param name="aRows">Where A's rows come from.</param>
    /// <param name="cRows">Where C's rows go.</param>
    /// <param name="rowScale">[R] dtype indexed by token slot, or null.</param>
    public void ForwardNT(CudaStream stream, ScalarType dtype, GemmConfig? config,
        DeviceRange a, DeviceRange w, DeviceRange c, GroupedRows rows, int n, int k,
        RowSource aRows, RowTarget cRows, DeviceRange rowScale)
    {
        CheckStream(stream);
        GemmPlan? plan = Plan(GroupedGemmLayout.ForwardNT, dtype, config, Context.ComputeCapability, Context.MultiprocessorCount,
            a, w, c, rowScale, rows, n, k, (int)aRows, (int)cRows, UsesSm90a);
        if (plan is not { } p) return;
        if (p.Spec.Math == GemmMath.WgmmaSm90a)
        {
            (CudaTensorMap aMap, int aTma) = RowOperand(dtype, a, rows, k, aRows);
            var hopper = new GroupedGemmRowsSm90aArgs
            {
                // a cluster of 2 loads half the stage per CTA: box (64 k, BN/2 n, 1)
                WMap = WeightMap(dtype, w.Pointer, [k, n, rows.Experts], [GemmConfig.WgmmaBlockK, p.Spec.Config.BlockN / p.Spec.Config.Cluster, 1]),
                AMap = aMap, ATma = aTma,
                A = a.Pointer, C = c.Pointer, MSizes = rows.MSizes, Gather = rows.Gather, RowScale = rowScale.Pointer,
                Experts = rows.Experts, N = n, K = k, AMode = (int)aRows, CMode = (int)cRows, TopK = rows.TopK,
            };
            Launch(p, stream, in hopper);
            return;
        }
        var args = new GroupedGemmForwardArgs
        {
            A = a.Pointer, W = w.Pointer, C = c.Pointer, MSizes = rows.MSizes, Gather = rows.Gather, RowScale = rowScale.Pointer,
            Experts = rows.Experts, N = n, K = k, AMode = (int)aRows, CMode = (int)cRows, TopK = rows.TopK,
        };
        Launch(p, stream, in args);
    }

    /// <summary>
    /// Backward data: <c>C[c(r), k] = Σ_n A[a(r), n] · W[e(r), n, k]</c> (dX = dY·W[e]); W is read N-major.
    /// </summary>
    /// <param name="stream">Stream of this context.</param>
    /// <param name="dtype">Storage dtype of A, W, C.</param>
    /// <param name="config">Tile configuration or null for a default.</param>
    /// <param name="a">[R, N] (Identity, Gather) or [R/k, N] (GatherToken), dtype (dY).</param>
    /// <param name="w">[E, N, K] dtype (the forward weight).</param>
    /// <param name="c">[R, K] dtype, out (dX; every row written).</param>
    /// <param name="rows">m_sizes, gather, R, E, k.</param>
    /// <param name="n">N (reduction: the forward's output dim).</param>
    /// <param name="k">K (output columns).</param>
    /// <param name="aRows">Where A's rows come from (Gather when the forward used permute_y).</param>
    /// <param name="cRows">Where C's rows go (Scatter when the forward used permute_x).</param>
    public void BackwardDataNN(CudaStream stream, ScalarType dtype, GemmConfig? config,
        DeviceRange a, DeviceRange w, DeviceRange c, GroupedRows rows, int n, int k,
        RowSource aRows, RowTarget cRows)
    {
        CheckStream(stream);
        GemmPlan? plan = Plan(GroupedGemmLayout.BackwardDataNN, dtype, config, Context.ComputeCapability, Context.MultiprocessorCount,
            a, w, c, DeviceRange.Null, rows, n, k, (int)aRows, (int)cRows, UsesSm90a);
        if (plan is not { } p) return;
        if (p.Spec.Math == GemmMath.WgmmaSm90a)
        {
            // kernel terms: output columns = K, reduction = N; W [E, N, K] read N-major: map dims (K, N, E), box (64, 64, 1)
            (CudaTensorMap aMap, int aTma) = RowOperand(dtype, a, rows, n, aRows); // A [R, N]: N is the reduction here
            var hopper = new GroupedGemmRowsSm90aArgs
            {
                WMap = WeightMap(dtype, w.Pointer, [k, n, rows.Experts], [64, 64, 1]),
                AMap = aMap, ATma = aTma,
                A = a.Pointer, C = c.Pointer, MSizes = rows.MSizes, Gather = rows.Gather, RowScale = 0,
                Experts = rows.Experts, N = k, K = n, AMode = (int)aRows, CMode = (int)cRows, TopK = rows.TopK,
            };
            Launch(p, stream, in hopper);
            return;
        }
        var args = new GroupedGemmBackwardDataArgs
        {
            A = a.Pointer, W = w.Pointer, C = c.Pointer, MSizes = rows.MSizes, Gather = rows.Gather,
            Experts = rows.Experts, N = n, K = k, AMode = (int)aRows, CMode = (int)cRows, TopK = rows.TopK,
        };
        Launch(p, stream, in args);
    }

    /// <summary>
    /// Backward weight: <c>dW[e, n, k] = Σ_{r∈e} A[a(r), n] · B[b(r), k]</c> (dW[e] = dYₑᵀ·Xₑ); experts without rows get
    /// zeros; one CTA per output tile reduces in a fixed order (deterministic, no atomics).
    /// </summary>
    /// <param name="stream">Stream of this context.</param>
    /// <param name="dtype">Storage dtype of A, B, dW.</param>
    /// <param name="config">Tile configuration or null for a default (BlockM tiles N, BlockN tiles K).</param>
    /// <param name="a">[R, N] or [R/k, N] dtype (dY).</param>
    /// <param name="b">[R, K] or [R/k, K] dtype (X).</param>
    /// <param name="dw">[E, N, K] dtype, out (overwritten).</param>
    /// <param name="rows">m_sizes, gather, R, E, k.</param>
    /// <param name="n">N.</param>
    /// <param name="k">K.</param>
    /// <param name="aRows">Where A's rows come from.</param>
    /// <param name="bRows">Where B's rows come from.</param>
    public void BackwardWeightTN(CudaStream stream, ScalarType dtype, GemmConfig? config,
        DeviceRange a, DeviceRange b, DeviceRange dw, GroupedRows rows, int n, int k,
        RowSource aRows, RowSource bRows) =>
        LaunchBackwardWeight(stream, dtype, config, a, b, dw, rows, n, k, aRows, bRows, float32Output: false);

    /// <summary>The TN launch of <see cref="BackwardWeightTN"/> and <see cref="BackwardWeightTNFloat32"/> (dW in the
    /// dtype or f32): plan, then the kernel (the sm_90a kernel also takes dW's tensor map, for its TMA stores).</summary>
    private void LaunchBackwardWeight(CudaStream stream, ScalarType dtype, GemmConfig? config,
        DeviceRange a, DeviceRange b, DeviceRange dw, GroupedRows rows, int n, int k, RowSource aRows, RowSource bRows, bool float32Output)
    {
        CheckStream(stream);
        GemmPlan? plan = Plan(GroupedGemmLayout.BackwardWeightTN, dtype, config, Context.ComputeCapability, Context.MultiprocessorCount,
            a, b, dw, DeviceRange.Null, rows, n, k, (int)aRows, (int)bRows, UsesSm90a, float32Output: float32Output);
        if (plan is not { } p) return;
        if (p.Spec.Math == GemmMath.WgmmaSm90a)
        {
            ScalarType stored = float32Output ? ScalarType.Float32 : dtype;
            var hopper = new GroupedGemmWeightSm90aArgs
            {
                // each consumer warp stores its 16 dW rows as boxes of 128 bytes of columns (the staging's swizzle atom)
                DwMap = WeightMap(stored, dw.Pointer, [k, n, rows.Experts], [GemmConfig.WgmmaStoreBoxBytes / stored.SizeOf(), GemmConfig.WgmmaStoreRows, 1]),
                A = a.Pointer, B = b.Pointer, DW = dw.Pointer, MSizes = rows.MSizes, Gather = rows.Gather,
                Experts = rows.Experts, N = n, K = k, AMode = (int)aRows, BMode = (int)bRows, TopK = rows.TopK,
            };
            Launch(p, stream, in hopper);
            return;
        }
        var args = new GroupedGemmBackwardWeightArgs
        {
            A = a.Pointer, B = b.Pointer, DW = dw.Pointer, MSizes = rows.MSizes, Gather = rows.Gather,
            Experts = rows.Experts, N = n, K = k, AMode = (int)aRows, BMode = (int)bRows, TopK = rows.TopK,
        };
        Launch(p, stream, in args);
    }

    /// <summary>
    /// The configuration used when a call passes null: among the candidates (largest tile first) the first whose
    /// (estimated) tile count still fills every SM once; decode-sized problems fall through to the smallest tile.
    /// For the row-tiled layouts, 128-row tiles are skipped when experts average fewer than 128 rows (half the
    /// tile would multiply zeros).
    /// </summary>
    public static GemmConfig DefaultConfig(GroupedGemmLayout layout, ScalarType dtype, (int Major, int Minor) computeCapability,
        int multiprocessors, GroupedRows rows, int n, int k, bool sm90a = false)
    {
        GroupedGemmSpecs.Tag(layout); // validates the layout
        CheckArchitecture(computeCapability);
        // sm_90a (9.0 only), row-tiled (NT, NN): its 128-row tiles once experts average 128 rows or more. Measured on an
        // H200 (docs/PERF.md v10): at ~64 rows per expert (Qwen3-30B-A3B T = 1024) the sm_80 128x128x64 tile is faster
        // (0.340 vs 0.415 ms). TN (dW tiles over N x K, the rows are the reduction): once its tiles fill every SM.
        if (sm90a && Sm90aAvailable(computeCapability) && GroupedGemmSm90aSpecs.Candidates(layout, dtype).Count > 0)
        {
            if (layout == GroupedGemmLayout.BackwardWeightTN)
            {
                GemmConfig weightTile = GroupedGemmSm90aSpecs.Default(layout, k);
                if (EstimatedTiles(layout, weightTile, rows, n, k) >= multiprocessors) return weightTile;
            }
            else if (rows.TotalRows / Math.Max(1, Math.Min(rows.Experts, rows.TotalRows)) >= 128)
                return GroupedGemmSm90aSpecs.Default(layout, layout == GroupedGemmLayout.ForwardNT ? n : k);
        }
        // the common list only (largest tile first): the BlockK = 64 NT tiles are offered to autotune, not defaulted
        IReadOnlyList<GemmConfig> candidates = GroupedGemmSpecs.CandidateConfigs(dtype);
        long activeExperts = Math.Max(1, Math.Min(rows.Experts, rows.TotalRows));
        bool fewRows = layout != GroupedGemmLayout.BackwardWeightTN && rows.TotalRows / activeExperts < 128;
        GemmConfig? fallback = null;
        for (int c = 0; c < candidates.Count; c++) // NOTE: an index loop: foreach over the interface would allocate an enumerator per call
        {
            GemmConfig cfg = candidates[c];
            if (fewRows && cfg.BlockM > 64) continue;
            fallback = cfg;
            if (EstimatedTiles(layout, cfg, rows, n, k) >= multiprocessors) return cfg;
        }
        return fallback ?? candidates[^1];
    }

    /// <summary>JIT-compiles (once) the specialisation, e.g. before a graph capture or an autotuning sweep.</summary>
    public void Preload(GroupedGemmLayout layout, ScalarType dtype, GemmConfig config)
    {
        CheckArchitecture(Context.ComputeCapability);
        Load(GroupedGemmSpecs.Create(layout, dtype, config));
    }

    // ============================================================================================== planning

    /// <summary>What one validated call launches.</summary>
    internal readonly record struct GemmPlan(GroupedGemmSpec Spec, long Tiles, int Experts);

    /// <summary>
    /// Validates a call (no device needed) and returns what to launch, or null when there is nothing to do.
    /// <paramref name="second"/> is W (NT, NN) or B (TN); <paramref name="mode2"/> is c_mode (NT, NN) or b_mode (TN).
    /// </summary>
    internal static GemmPlan? Plan(GroupedGemmLayout layout, ScalarType dtype, GemmConfig? config,
        (int Major, int Minor) computeCapability, int multiprocessors,
        DeviceRange a, DeviceRange second, DeviceRange output, DeviceRange rowScale, GroupedRows rows, int n, int k, int aMode, int mode2,
        bool sm90a = false, GroupedGemmEpilogue epilogue = GroupedGemmEpilogue.Plain, DeviceRange aux = default, bool float32Output = false)
    {
        GroupedGemmSpecs.Tag(layout); // validates the layout
        if (float32Output) CheckFloat32OutputCall(layout, dtype, epilogue, config);
        bool fused = epilogue != GroupedGemmEpilogue.Plain;
        if (fused) CheckFusedCall(layout, epilogue, dtype, rowScale, n, k, mode2);
        GemmMath math = GroupedGemmSpecs.MathFor(dtype);
        CheckArchitecture(computeCapability);
        int es = dtype.SizeOf();
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), n, "N must be >= 0.");
        if (k < 0) throw new ArgumentOutOfRangeException(nameof(k), k, "K must be >= 0.");
        if (rows.Experts < 0) throw new ArgumentOutOfRangeException(nameof(rows), rows.Experts, "rows.Experts (E) must be >= 0.");
        if (rows.TotalRows < 0) throw new ArgumentOutOfRangeException(nameof(rows), rows.TotalRows, "rows.TotalRows (T*k) must be >= 0.");
        if (rows.TopK < 1) throw new ArgumentOutOfRangeException(nameof(rows), rows.TopK, "rows.TopK (k) must be >= 1.");
        if (!Enum.IsDefined((RowSource)aMode)) throw new ArgumentOutOfRangeException("aRows", aMode, "Unknown RowSource.");
        bool weightGrad = layout == GroupedGemmLayout.BackwardWeightTN;
        string mode2Name = weightGrad ? "bRows" : "cRows";
        if (weightGrad ? !Enum.IsDefined((RowSource)mode2) : !Enum.IsDefined((RowTarget)mode2))
            throw new ArgumentOutOfRangeException(mode2Name, mode2, weightGrad ? "Unknown RowSource." : "Unknown RowTarget.");
        if (!rowScale.IsNull && layout != GroupedGemmLayout.ForwardNT)
            throw new ArgumentException("rowScale is only supported by ForwardNT.", nameof(rowScale));
        bool tokenRows = aMode == (int)RowSource.GatherToken || (weightGrad && mode2 == (int)RowSource.GatherToken);
        if (tokenRows && rows.TotalRows % rows.TopK != 0)
            throw new ArgumentException($"rows.TotalRows = {rows.TotalRows} must be a multiple of rows.TopK = {rows.TopK} for RowSource.GatherToken.", nameof(rows));

        // the empty cases: nothing to write (dW of shape [E,N,K] with no rows is still written: zeros)
        if (config is not null && GroupedGemmSpecs.Problem(layout, dtype, config) is { } problem)
            throw new ArgumentException($"Invalid {dtype.ShortName()} grouped-GEMM configuration {config.Name}: {problem}", nameof(config));
        if (config is not null && GroupedGemmSpecs.MathOf(config) == GemmMath.WgmmaSm90a && !Sm90aAvailable(computeCapability))
            throw new ArgumentException(
                $"{config.Name} is an sm_90a (Hopper) configuration; the device is {computeCapability.Major}.{computeCapability.Minor} (sm_90a code runs on 9.0 only).", nameof(config));
        if (n == 0 || k == 0 || rows.Experts == 0) return null;
        if (rows.TotalRows == 0 && !weightGrad) return null;
        if (epilogue != GroupedGemmEpilogue.DSwiGlu && config?.ShapeProblem(layout, n, k) is { } shapeProblem) // dSwiGLU runs a staged tile as its register twin
            throw new ArgumentException(shapeProblem, layout == GroupedGemmLayout.BackwardDataNN ? nameof(n) : nameof(k));

        // pointers and sizes
        long r = rows.TotalRows, e = rows.Experts, tokens = r / rows.TopK;
        bool usesGather = aMode != 0 || mode2 != 0 || !rowScale.IsNull;
        Need(rows.MSizes, e * 4, "rows", $"rows.MSizes [E={e}] i32");
        if (usesGather) Need(rows.Gather, r * 4, "rows", $"rows.Gather [T*k={r}] i32 (needed by a gathered/scattered side or rowScale)");
        long aRowsCount = aMode == (int)RowSource.GatherToken ? tokens : r;
        switch (layout)
        {
            case GroupedGemmLayout.ForwardNT:
                Need(a, aRowsCount * k * es, nameof(a), $"[{aRowsCount},K={k}] {dtype}");
                Need(second, e * n * k * es, "w", $"[E={e},N={n},K={k}] {dtype}");
                if (!fused) Need(output, r * n * es, "c", $"[T*k={r},N={n}] {dtype}");
                if (!rowScale.IsNull) Need(rowScale, r * es, nameof(rowScale), $"[T*k={r}] {dtype}");
                break;
            case GroupedGemmLayout.BackwardDataNN:
                Need(a, aRowsCount * n * es, nameof(a), $"[{aRowsCount},N={n}] {dtype}");
                Need(second, e * n * k * es, "w", $"[E={e},N={n},K={k}] {dtype}");
                if (!fused) Need(output, r * k * es, "c", $"[T*k={r},K={k}] {dtype}");
                break;
            default:
                long bRowsCount = mode2 == (int)RowSource.GatherToken ? tokens : r;
                if (r > 0) Need(a, aRowsCount * n * es, nameof(a), $"[{aRowsCount},N={n}] {dtype}");
                if (r > 0) Need(second, bRowsCount * k * es, "b", $"[{bRowsCount},K={k}] {dtype}");
                Need(output, e * n * k * (float32Output ? 4 : es), "dw", $"[E={e},N={n},K={k}] {(float32Output ? "f32" : dtype.ToString())}");
                break;
        }
        ulong elem = (ulong)es;
        Aligned(a, elem, nameof(a));
        Aligned(second, elem, weightGrad ? "b" : "w");
        Aligned(output, elem, weightGrad ? "dw" : "c");
        Aligned(rowScale, elem, nameof(rowScale));
        if (fused) CheckFusedOperands(epilogue, dtype, a, second, output, aux, r, aRowsCount, n, k);

        // tensor cores move 16-byte chunks (8 elements): every row start and base must be 16-byte aligned
        bool tensorCoreShape = math != GemmMath.Ffma && n % 8 == 0 && k % 8 == 0
            && a.Pointer % 16 == 0 && second.Pointer % 16 == 0 && output.Pointer % 16 == 0;
        GemmConfig cfg = float32Output ? Float32OutputConfig(dtype, config, computeCapability, multiprocessors, sm90a, tensorCoreShape, rows, n, k, a, second, output)
            : fused ? FusedConfig(layout, epilogue, config, computeCapability, sm90a, tensorCoreShape, n, k)
            : !tensorCoreShape || config == GemmConfig.Ffma64x64 ? GemmConfig.Ffma64x64
            : config ?? DefaultConfig(layout, dtype, computeCapability, multiprocessors, rows, n, k, sm90a);
        GroupedGemmSpec spec = GroupedGemmSpecs.Create(layout, dtype, cfg, epilogue, float32Output);
        return new GemmPlan(spec, EstimatedTiles(layout, cfg, rows, n, k), rows.Experts);
    }

    /// <summary>
    /// Tile count (upper bound for the row-tiled layouts, where the device's m_sizes decide): the persistent grid is
    /// min(this, SMs × resident CTAs per SM).
    /// </summary>
    internal static long EstimatedTiles(GroupedGemmLayout layout, GemmConfig cfg, GroupedRows rows, int n, int k)
    {
        long e = Math.Max(rows.Experts, 0), r = Math.Max(rows.TotalRows, 0);
        if (layout == GroupedGemmLayout.BackwardWeightTN)
            return e * CeilDiv(n, cfg.BlockM) * CeilDiv(k, cfg.BlockN);
        long cols = layout == GroupedGemmLayout.ForwardNT ? n : k;
        // Σ_e ceil(m_e / BM) <= floor(R / BM) + (number of experts with rows) <= R / BM + min(E, R)
        long mTiles = r / cfg.BlockM + Math.Min(e, r);
        return mTiles * CeilDiv(cols, cfg.BlockN);
    }

    // ============================================================================================== launching

    private sealed class LoadedGemm(object kernel, CudaKernel raw)
    {
        private long _clusters = -1; // (dynamic shared bytes << 32) | max active clusters at that size; -1 = not asked

        public object Kernel { get; } = kernel;
        public int RegistersPerThread { get; } = raw.NumRegisters;

        /// <summary>The most clusters of <paramref name="cluster"/> CTAs that run at once with
        /// <paramref name="smem"/> bytes (cuOccupancyMaxActiveClusters, asked once per shared size, then cached).</summary>
        public int MaxActiveClusters(int threads, int smem, int cluster)
        {
            long known = Volatile.Read(ref _clusters);
            if (known >= 0 && (int)(known >> 32) == smem) return (int)(known & 0xFFFF_FFFF);
            int clusters = raw.MaxActiveClusters(new Dim3((uint)threads), smem, (uint)cluster);
            Volatile.Write(ref _clusters, ((long)smem << 32) | (uint)clusters);
            return clusters;
        }
    }

    private void Launch<TArgs>(GemmPlan plan, CudaStream stream, in TArgs args) where TArgs : unmanaged
    {
        GroupedGemmSpec spec = plan.Spec;
        LoadedGemm loaded = Load(spec);
        int smem = spec.LaunchSharedBytes(plan.Experts);
        if (smem > Math.Max(48 * 1024, Context.MaxSharedMemoryPerBlockOptin))
            throw new NotSupportedException(
                $"{spec.ModuleName} with E = {plan.Experts} needs {smem} bytes of shared memory; {Context.Name} allows {Context.MaxSharedMemoryPerBlockOptin} per block.");
        long resident = (long)Context.MultiprocessorCount * CtasPerSm(spec, loaded.RegistersPerThread, smem);
        long cap = GridLimitForTesting is { } limit ? Math.Max(limit, 1) : long.MaxValue;
        uint grid = (uint)Math.Clamp(Math.Min(Math.Min(plan.Tiles, resident), cap), 1, int.MaxValue);
        int cluster = spec.Config.Cluster; // the grid is whole clusters (.reqnctapercluster), each walking pairs of m-tiles
        var kernel = (PtxKernel<TArgs>)loaded.Kernel;
        if (cluster > 1)
        {
            // NOTE: no more clusters than run at once (an SM whose GPC has no partner for it stays out of every
            // pair): a persistent cluster past that count would wait for a whole wave of the others.
            long clusters = Math.Min(grid / cluster, loaded.MaxActiveClusters(spec.Config.Threads, smem, cluster));
            grid = (uint)(Math.Max(clusters, 1) * cluster);
            kernel.LaunchClustered(stream, new Dim3(grid), new Dim3((uint)spec.Config.Threads), smem, in args, (uint)cluster);
        }
        else
            kernel.Launch(stream, new Dim3(grid), new Dim3((uint)spec.Config.Threads), smem, in args);
    }

    private LoadedGemm Load(GroupedGemmSpec spec)
    {
        GroupedGemmSpecKey key = spec.Key;
        if (_loaded.TryGetValue(key, out LoadedGemm? hit)) return hit;
        lock (_gate)
        {
            if (_loaded.TryGetValue(key, out hit)) return hit;
            PtxModuleSpec module = spec.ToModuleSpec();
            (object kernel, CudaKernel raw) = spec.Layout switch
            {
                _ when spec.Math == GemmMath.WgmmaSm90a && spec.Layout == GroupedGemmLayout.BackwardWeightTN
                    => Typed<GroupedGemmWeightSm90aArgs>(module, spec.EntryName),
                _ when spec.Math == GemmMath.WgmmaSm90a => Typed<GroupedGemmRowsSm90aArgs>(module, spec.EntryName),
                GroupedGemmLayout.ForwardNT => Typed<GroupedGemmForwardArgs>(module, spec.EntryName),
                GroupedGemmLayout.BackwardDataNN => Typed<GroupedGemmBackwardDataArgs>(module, spec.EntryName),
                _ => Typed<GroupedGemmBackwardWeightArgs>(module, spec.EntryName),
            };
            if (spec.DynamicSharedBytes > Context.MaxSharedMemoryPerBlockOptin)
                throw new NotSupportedException(
                    $"{spec.ModuleName} needs {spec.DynamicSharedBytes} bytes of shared memory; {Context.Name} allows {Context.MaxSharedMemoryPerBlockOptin} per block.");
            // NOTE: kernels with a per-expert table (SharedBytesPerExpert) launch with more than DynamicSharedBytes:
            // allow up to the opt-in limit (the launch checks its own total).
            if (spec.DynamicSharedBytes > 48 * 1024 || (spec.SharedBytesPerExpert > 0 && Context.MaxSharedMemoryPerBlockOptin > 48 * 1024))
                raw.SetMaxDynamicSharedMemory(spec.SharedBytesPerExpert > 0 ? Context.MaxSharedMemoryPerBlockOptin : spec.DynamicSharedBytes);
            var loaded = new LoadedGemm(kernel, raw);
            _loaded[key] = loaded;
            return loaded;
        }
    }

    private (object, CudaKernel) Typed<TArgs>(PtxModuleSpec module, string entry) where TArgs : unmanaged
    {
        PtxKernel<TArgs> kernel = PtxModuleCache.GetKernel<TArgs>(Context, module, entry);
        return (kernel, kernel.Kernel);
    }

    /// <summary>Resident CTAs per SM from registers (64K per SM, allocated per warp in 256-register units),
    /// shared memory (opt-in limit + 1 KiB per SM, 1 KiB reserved per CTA) and threads (2048 per SM).</summary>
    private int CtasPerSm(GroupedGemmSpec spec, int registersPerThread, int dynamicSharedBytes)
    {
        int threads = spec.Config.Threads;
        int warpRegs = (Math.Max(registersPerThread, 1) * 32 + 255) / 256 * 256;
        int byRegs = 65536 / (warpRegs * spec.Config.Warps);
        int smemPerCta = dynamicSharedBytes + StaticSharedBytes(spec) + 1024;
        int bySmem = (Context.MaxSharedMemoryPerBlockOptin + 1024) / smemPerCta;
        int byThreads = 2048 / threads;
        return Math.Max(1, Math.Min(Math.Min(byRegs, bySmem), Math.Min(byThreads, 32)));
    }

    /// <summary>The TMA map of W [E, N, K] as dims (K, N, E) innermost first, byte strides (es K, es NK), 128-byte swizzle
    /// (the stage image the wgmma descriptors read); elements past N or K read as zeros. Box: NT (64 k, BN n, 1), NN
    /// (64 k-columns, 64 n-rows, 1). Also dW [E, N, K] of the TN kernel's TMA stores (box: 128 B of columns, 16 rows,
    /// 1), which write nothing past N or K.</summary>
    /// <summary>The A operand of an sm_90a row-tiled launch: its tensor map and the kernel's p_a_tma flag (1) when
    /// <see cref="RowOperandByTma"/> and the rows are in expert order, else no map and 0 (the row copies). A [R, K]
    /// as (K, R), box (64 k, 64 rows), 128B swizzle: the image the row copies write.</summary>
    internal (CudaTensorMap Map, int ByTma) RowOperand(ScalarType dtype, DeviceRange a, GroupedRows rows, int k, RowSource aRows)
    {
        if (!RowOperandByTma || aRows != RowSource.Identity || rows.TotalRows <= 0) return (default, 0);
        long es = dtype.SizeOf();
        var map = CudaTensorMap.EncodeTiled(CudaTensorMap.DataTypeOf(dtype), a.Pointer, [k, rows.TotalRows], [k * es],
            [GemmConfig.WgmmaBlockK, GemmConfig.WgmmaBlockM / 2], CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B);
        return (map, 1);
    }

    internal static CudaTensorMap WeightMap(ScalarType dtype, ulong w, ReadOnlySpan<long> dims, ReadOnlySpan<int> box)
    {
        long es = dtype.SizeOf();
        ReadOnlySpan<long> strides = [dims[0] * es, dims[0] * dims[1] * es];
        return CudaTensorMap.EncodeTiled(CudaTensorMap.DataTypeOf(dtype), w, dims, strides, box,
            CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B);
    }

    private static int StaticSharedBytes(GroupedGemmSpec spec) => spec.Math == GemmMath.Ffma ? 2 * 16 * 68 * 4 : 0; // smem_a + smem_b

    // ============================================================================================== checks

    private void CheckStream(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        Context.EnsureSameContext(stream.Context, nameof(stream), "this GroupedGemm");
    }

    private static void CheckArchitecture((int Major, int Minor) cc)
    {
        if (cc.Major < 8)
            throw new NotSupportedException($"The grouped-GEMM kernels need compute capability 8.0 or newer (sm_80: cp.async, ldmatrix, bf16 mma); the device is {cc.Major}.{cc.Minor}.");
    }

    private static long CeilDiv(long a, long b) => (a + b - 1) / b;
}
