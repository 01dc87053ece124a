using MoeNative.Interop;
using static MoeNative.Interop.DeviceRangeChecks;

namespace MoeNative.Ptx;

// The sm_90a grouped GEMMs with the SwiGLU / dSwiGLU epilogues (GroupedGemmEpilogue): GEMM1 writes A (and G1 when
// training needs it) instead of G1 alone; GEMM2's dX writes dG1 instead of dA. These exist on sm_90a only: a call
// never falls back to another kernel (whose caller would then be missing the SwiGLU step); the block asks
// Sm90aConfigFor first and runs the unfused sequence (plain GEMM + SiluMul kernel, same bits) where it is null.
public sealed partial class GroupedGemm
{
    /// <summary>
    /// GEMM1 with SwiGLU in its epilogue (sm_90a): per expert-ordered row r, <c>g, u = rnd(Σ_k A[a(r), k] ·
    /// W[e, c, k]), rnd(Σ_k A[a(r), k] · W[e, I + c, k])</c> (rnd = one rounding to dtype: the G1 the plain GEMM
    /// stores), written to <paramref name="g1"/> when it is not null; <c>act[r, c] = rnd(silu(g) · u)</c> in f32,
    /// the formula of <see cref="MoeKernels.SiluMulForward"/>. Same bits as <see cref="ForwardNT"/> with the same
    /// sm_90a config followed by SiluMulForward.
    /// </summary>
    /// <param name="stream">Stream of this context.</param>
    /// <param name="dtype">bf16 or fp16.</param>
    /// <param name="config">An sm_90a tile (<see cref="GemmConfig.Wgmma"/>), or null for the sm_90a default; its
    /// BlockN covers BlockN/2 gate and BlockN/2 up columns.</param>
    /// <param name="a">[R, K] (Identity, Gather) or [R/k, K] (GatherToken), dtype (X).</param>
    /// <param name="w">[E, 2I, K] dtype (Wgu: gate rows 0..I-1, up rows I..2I-1).</param>
    /// <param name="act">[R, I] dtype, out (A; every row written).</param>
    /// <param name="g1">[R, 2I] dtype, out, or null (inference: G1 is not written).</param>
    /// <param name="rows">m_sizes, gather, R, E, k.</param>
    /// <param name="intermediate">I (a multiple of 8).</param>
    /// <param name="k">K (reduction, H).</param>
    /// <param name="aRows">Where A's rows come from.</param>
    /// <exception cref="NotSupportedException">Null config and this instance does not run sm_90a (not a 9.0 device, or ForceSm80).</exception>
    public void ForwardNTSwiGlu(CudaStream stream, ScalarType dtype, GemmConfig? config,
        DeviceRange a, DeviceRange w, DeviceRange act, DeviceRange g1, GroupedRows rows, int intermediate, int k, RowSource aRows)
    {
        CheckStream(stream);
        if (intermediate < 0) throw new ArgumentOutOfRangeException(nameof(intermediate), intermediate, "I must be >= 0.");
        int n = 2 * intermediate; // kernel N: the 2I columns of G1, tiled BlockN at a time (BlockN/2 gate + BlockN/2 up)
        GemmPlan? plan = Plan(GroupedGemmLayout.ForwardNT, dtype, config, Context.ComputeCapability, Context.MultiprocessorCount,
            a, w, act, DeviceRange.Null, rows, n, k, (int)aRows, (int)RowTarget.Identity, UsesSm90a, GroupedGemmEpilogue.SwiGlu, g1);
        if (plan is not { } p) return;
        (CudaTensorMap aMap, int aTma) = RowOperand(dtype, a, rows, k, aRows);
        var hopper = new GroupedGemmRowsSm90aArgs
        {
            // W [E, 2I, K] as (K, I, 2E): outer coordinate 2e = gate half, 2e+1 = up half; box (64 k, BN/2 rows, 1)
            WMap = WeightMap(dtype, w.Pointer, [k, intermediate, 2L * rows.Experts], [GemmConfig.WgmmaBlockK, p.Spec.Config.BlockN / 2, 1]),
            AMap = aMap, ATma = aTma,
            A = a.Pointer, C = act.Pointer, MSizes = rows.MSizes, Gather = rows.Gather, RowScale = 0,
            Experts = rows.Experts, N = n, K = k, AMode = (int)aRows, CMode = (int)RowTarget.Identity, TopK = rows.TopK,
            Aux = g1.Pointer,
        };
        Launch(p, stream, in hopper);
    }

    /// <summary>
    /// GEMM2's dX with dSwiGLU in its epilogue (sm_90a): <c>dA[r, c] = rnd(Σ_n A[a(r), n] · W[e, n, c])</c> (the dA
    /// the plain GEMM stores), then with g, u = G1[r, c], G1[r, I + c]: <c>dG1[r] = [rnd(dA·u·s·(1 + g(1 − s))) |
    /// rnd(dA·g·s)]</c>, s = sigmoid(g), the formula of <see cref="MoeKernels.SiluMulBackward"/>. Same bits as
    /// <see cref="BackwardDataNN"/> with the same sm_90a config followed by SiluMulBackward.
    /// </summary>
    /// <param name="stream">Stream of this context.</param>
    /// <param name="dtype">bf16 or fp16.</param>
    /// <param name="config">An sm_90a tile, or null for the sm_90a default.</param>
    /// <param name="a">[R, N] (Identity, Gather) or [R/k, N] (GatherToken), dtype (dG2).</param>
    /// <param name="w">[E, N, I] dtype (Wd, the forward weight).</param>
    /// <param name="g1">[R, 2I] dtype, in (the forward's G1).</param>
    /// <param name="dG1">[R, 2I] dtype, out (overwritten; every row written).</param>
    /// <param name="rows">m_sizes, gather, R, E, k.</param>
    /// <param name="n">N (reduction: H).</param>
    /// <param name="intermediate">I (output columns of the GEMM, a multiple of 8).</param>
    /// <param name="aRows">Where A's rows come from (Gather when the forward used permute_y).</param>
    /// <exception cref="NotSupportedException">Null config and this instance does not run sm_90a.</exception>
    public void BackwardDataNNDSwiGlu(CudaStream stream, ScalarType dtype, GemmConfig? config,
        DeviceRange a, DeviceRange w, DeviceRange g1, DeviceRange dG1, GroupedRows rows, int n, int intermediate, RowSource aRows)
    {
        CheckStream(stream);
        GemmPlan? plan = Plan(GroupedGemmLayout.BackwardDataNN, dtype, config, Context.ComputeCapability, Context.MultiprocessorCount,
            a, w, dG1, DeviceRange.Null, rows, n, intermediate, (int)aRows, (int)RowTarget.Identity, UsesSm90a, GroupedGemmEpilogue.DSwiGlu, g1);
        if (plan is not { } p) return;
        (CudaTensorMap aMap, int aTma) = RowOperand(dtype, a, rows, n, aRows);
        var hopper = new GroupedGemmRowsSm90aArgs
        {
            // as BackwardDataNN: kernel N = I (output columns), K = n (reduction); W read N-major, box (64, 64, 1)
            WMap = WeightMap(dtype, w.Pointer, [intermediate, n, rows.Experts], [64, 64, 1]),
            AMap = aMap, ATma = aTma,
            A = a.Pointer, C = dG1.Pointer, MSizes = rows.MSizes, Gather = rows.Gather, RowScale = 0,
            Experts = rows.Experts, N = intermediate, K = n, AMode = (int)aRows, CMode = (int)RowTarget.Identity, TopK = rows.TopK,
            Aux = g1.Pointer,
        };
        Launch(p, stream, in hopper);
    }

    /// <summary>
    /// The sm_90a tile the plain <see cref="ForwardNT"/> (<paramref name="layout"/> ForwardNT) or
    /// <see cref="BackwardDataNN"/> call with these arguments launches on this instance, or null when it runs
    /// another kernel (sm_80, SIMT) or nothing. A fused call with that tile gives the plain call's bits followed by
    /// the SwiGLU kernel's; the call is validated as the plain one (same exceptions). No launch, no allocation.
    /// </summary>
    public GemmConfig? Sm90aConfigFor(GroupedGemmLayout layout, ScalarType dtype, GemmConfig? config,
        DeviceRange a, DeviceRange w, DeviceRange c, GroupedRows rows, int n, int k, RowSource aRows, RowTarget cRows)
    {
        if (layout is not (GroupedGemmLayout.ForwardNT or GroupedGemmLayout.BackwardDataNN))
            throw new ArgumentException($"Only ForwardNT and BackwardDataNN have fused sm_90a epilogues; got {layout}.", nameof(layout));
        GemmPlan? plan = Plan(layout, dtype, config, Context.ComputeCapability, Context.MultiprocessorCount,
            a, w, c, DeviceRange.Null, rows, n, k, (int)aRows, (int)cRows, UsesSm90a);
        return plan is { Spec.Math: GemmMath.WgmmaSm90a } p ? p.Spec.Config : null;
    }

    // ============================================================================================== checks

    /// <summary>Whether an intermediate size I suits the fused SwiGLU/dSwiGLU epilogues: a multiple of 8 (16-byte rows
    /// of A and G1's halves, 4-byte column pairs). A block with another I runs the unfused GEMM + SiluMul pair.</summary>
    public static bool FusedEpiloguesFit(int intermediate) => intermediate > 0 && intermediate % 8 == 0;

    /// <summary>What a fused call needs before the common checks: its layout, dtype, no row scale, expert-ordered
    /// output rows, I a multiple of 8 (kernel N = 2I for SwiGlu, kernel K = I for DSwiGlu).</summary>
    private static void CheckFusedCall(GroupedGemmLayout layout, GroupedGemmEpilogue epilogue, ScalarType dtype, DeviceRange rowScale,
        int n, int k, int cMode)
    {
        if (GroupedGemmSm90aSpecs.EpilogueProblem(layout, epilogue) is { } problem) throw new ArgumentException(problem, nameof(epilogue));
        if (dtype is not (ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentException($"The fused {epilogue} epilogue runs on the bf16/fp16 sm_90a kernels; got {dtype}.", nameof(dtype));
        if (!rowScale.IsNull) throw new ArgumentException($"The {epilogue} epilogue takes no row scale.", nameof(rowScale));
        if (cMode != (int)RowTarget.Identity)
            throw new ArgumentException($"The {epilogue} epilogue writes expert-ordered rows (RowTarget.Identity), the rows of G1.", "cRows");
        int inter = epilogue == GroupedGemmEpilogue.SwiGlu ? n / 2 : k;
        if (!FusedEpiloguesFit(inter) || (epilogue == GroupedGemmEpilogue.SwiGlu && n % 2 != 0))
            throw new ArgumentOutOfRangeException("intermediate", inter, "I must be a multiple of 8 for the fused epilogues (16-byte rows, 4-byte column pairs).");
    }

    /// <summary>The fused call's output and G1 sizes, G1's alignment, and that no output overlaps an input or another output.</summary>
    private static void CheckFusedOperands(GroupedGemmEpilogue epilogue, ScalarType dtype, DeviceRange a, DeviceRange w,
        DeviceRange output, DeviceRange g1, long r, long aRowsCount, int n, int k)
    {
        int es = dtype.SizeOf();
        bool swiGlu = epilogue == GroupedGemmEpilogue.SwiGlu;
        long inter = swiGlu ? n / 2 : k;
        string outName = swiGlu ? "act" : "dG1";
        Need(output, r * (swiGlu ? inter : 2 * inter) * es, outName, $"[T*k={r},{(swiGlu ? "I" : "2I")}={(swiGlu ? inter : 2 * inter)}] {dtype}");
        if (!swiGlu && g1.IsNull) throw new ArgumentException("g1 [T*k, 2I] (the forward's G1) is a null device pointer; the dSwiGLU epilogue reads it.", "g1");
        if (!g1.IsNull) Need(g1, r * 2 * inter * es, "g1", $"[T*k={r},2I={2 * inter}] {dtype}");
        Aligned(g1, 16, "g1");
        Aligned(output, 16, outName);
        long aBytes = aRowsCount * (swiGlu ? k : n) * es;
        Disjoint(output, r * (swiGlu ? inter : 2 * inter) * es, outName, a, aBytes, "a");
        Disjoint(output, 1, outName, w, 1, "w");
        Disjoint(output, r * (swiGlu ? inter : 2 * inter) * es, outName, g1, r * 2 * inter * es, "g1");
        if (swiGlu) Disjoint(g1, r * 2 * inter * es, "g1", a, aBytes, "a");
    }

    /// <summary>Throws (naming <paramref name="name"/>) when [x, x + xBytes) and [y, y + yBytes) overlap (null never does).</summary>
    private static void Disjoint(DeviceRange x, long xBytes, string name, DeviceRange y, long yBytes, string other)
    {
        if (x.IsNull || y.IsNull || xBytes <= 0 || yBytes <= 0) return;
        if (x.Pointer < y.Pointer + (ulong)yBytes && y.Pointer < x.Pointer + (ulong)xBytes)
            throw new ArgumentException($"{name} (0x{x.Pointer:x}, {xBytes} bytes) overlaps {other} (0x{y.Pointer:x}, {yBytes} bytes): an output never overwrites an input.", name);
    }

    /// <summary>The tile of a fused call: the explicit sm_90a config, or the sm_90a default of its output width when
    /// this instance runs sm_90a; never an sm_80 or SIMT tile.</summary>
    private static GemmConfig FusedConfig(GroupedGemmLayout layout, GroupedGemmEpilogue epilogue, GemmConfig? config,
        (int Major, int Minor) computeCapability, bool sm90a, bool tensorCoreShape, int n, int k)
    {
        if (config is not null && GroupedGemmSpecs.MathOf(config) != GemmMath.WgmmaSm90a)
            throw new ArgumentException(
                $"The {epilogue} epilogue exists on the sm_90a kernels only; {config.Name} is not an sm_90a configuration (run the plain GEMM and the SwiGLU kernel instead).", nameof(config));
        if (!tensorCoreShape)
            throw new ArgumentException($"The {epilogue} epilogue needs N and K multiples of 8 and 16-byte aligned operands (the sm_90a kernel's TMA and cp.async chunks).", "a");
        if (config is not null) return config;
        if (!sm90a || !Sm90aAvailable(computeCapability))
            throw new NotSupportedException(
                $"The {epilogue} epilogue needs the sm_90a kernels: the device is {computeCapability.Major}.{computeCapability.Minor}{(Sm90aAvailable(computeCapability) ? " and ForceSm80 is set" : " (sm_90a runs on 9.0 only)")}; pass no fused call here (the unfused GEMM + SwiGLU kernel give the same result).");
        return GroupedGemmSm90aSpecs.Default(layout, layout == GroupedGemmLayout.ForwardNT ? n : k);
    }
}
