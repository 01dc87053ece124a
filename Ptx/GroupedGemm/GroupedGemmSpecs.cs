using System.Collections.Concurrent;
using System.Globalization;
using MoeNative.Interop;

namespace MoeNative.Ptx;

/// <summary>One grouped-GEMM specialisation: which PTX file, which template values, which entry and args struct.</summary>
/// <param name="Layout">NT forward, NN backward data or TN backward weight.</param>
/// <param name="DType">Storage dtype.</param>
/// <param name="Math">FFMA (fp32) or sm_80 tensor cores (bf16/fp16).</param>
/// <param name="Config">Tile configuration.</param>
/// <param name="File">Embedded PTX path relative to Ptx/ (e.g. GroupedGemm/grouped_gemm_nt_mma_sm80.ptx).</param>
/// <param name="EntryName">The .entry name after substitution.</param>
/// <param name="DynamicSharedBytes">Dynamic shared memory per CTA the launch passes (0 for the FFMA kernels).</param>
/// <param name="Values">Template values (exactly the placeholders of <paramref name="File"/>).</param>
internal sealed record GroupedGemmSpec(GroupedGemmLayout Layout, ScalarType DType, GemmMath Math, GemmConfig Config,
    string File, string EntryName, int DynamicSharedBytes, IReadOnlyDictionary<string, string> Values)
{
    /// <summary>Unique module name: file without extension + dtype + tile, e.g. GroupedGemm/grouped_gemm_nt_mma_sm80.bf16.128x128x32_s4_w8.</summary>
    public string ModuleName => $"{Path.ChangeExtension(File, null)}{(Math == GemmMath.WgmmaSm90a ? "." + GroupedGemmSpecs.Tag(Layout) + Sm90aEpilogues.Tag(Epilogue) : "")}.{DType.ShortName()}.{Config.Name}"
        + GroupedGemmSpecs.OutputTag(Float32Output);

    /// <summary>What identifies this specialisation (the spec cache's and the launcher's kernel cache's key).</summary>
    public GroupedGemmSpecKey Key => new(Math, Layout, DType, Config, Epilogue, Float32Output);

    /// <summary>The epilogue (<see cref="GroupedGemmEpilogue.Plain"/> except for the fused sm_90a variants).</summary>
    public GroupedGemmEpilogue Epilogue { get; init; }

    /// <summary>TN only: dW is stored as f32, unrounded (the router dW's row-chunk partials), instead of the dtype.</summary>
    public bool Float32Output { get; init; }

    /// <summary>The launch-args struct of this layout (the sm_90a NT/NN kernels pass W as a tensor map, the sm_90a TN
    /// kernel dW's map for its TMA stores before the sm_80 TN parameters).</summary>
    public Type ArgsType => Math != GemmMath.WgmmaSm90a ? GroupedGemmSpecs.ArgsTypeOf(Layout)
        : Layout == GroupedGemmLayout.BackwardWeightTN ? typeof(GroupedGemmWeightSm90aArgs) : typeof(GroupedGemmRowsSm90aArgs);

    /// <summary>Dynamic shared memory the launch adds per expert (the NT tensor-core kernel keeps m_sizes [E] in
    /// shared at offset <see cref="DynamicSharedBytes"/>); the launch passes DynamicSharedBytes + this·E rounded up to 16.</summary>
    public int SharedBytesPerExpert { get; init; }

    /// <summary>Dynamic shared memory of a launch over <paramref name="experts"/> experts.</summary>
    public int LaunchSharedBytes(int experts) => DynamicSharedBytes + (SharedBytesPerExpert * System.Math.Max(experts, 0) + 15) / 16 * 16;

    /// <summary>The specialised PTX text.</summary>
    public string SpecialisedPtx() => PtxTemplate.Specialise(PtxLibrary.ReadComposed(File), Values);

    /// <summary>Catalog entry (module name, specialised text, entry + args struct).</summary>
    public PtxModuleSpec ToModuleSpec() => new(ModuleName, SpecialisedPtx(), [new PtxKernelSpec(EntryName, ArgsType)]);

    public override string ToString() => ModuleName;
}

/// <summary>
/// What selects one grouped-GEMM specialisation: the instruction family (<see cref="GemmMath"/>, which names the
/// architecture: SIMT FFMA, sm_80 mma.sync; an sm_90a family adds its own value), the layout, the storage dtype and
/// the tile configuration, the epilogue (the fused ones exist on sm_90a only) and, for TN, whether dW is stored as f32.
/// </summary>
public readonly record struct GroupedGemmSpecKey(GemmMath Math, GroupedGemmLayout Layout, ScalarType DType, GemmConfig Config,
    GroupedGemmEpilogue Epilogue = GroupedGemmEpilogue.Plain, bool Float32Output = false);

/// <summary>
/// Builds <see cref="GroupedGemmSpec"/>s: file names, entry names and the template values each PTX file expects
/// (every derived size is computed here once; the PTX headers list the same formulas).
/// </summary>
internal static class GroupedGemmSpecs
{
    /// <summary>Bytes of one K-major stage row of BK elements: 2*BK B of data + 16 B pad (80 or 144; /16 odd).</summary>
    public static int KMajorPitchOf(int blockK) => 2 * blockK + 16;

    /// <summary>"" | "_f32out": the module- and entry-name part of a TN kernel whose dW is stored as f32.</summary>
    public static string OutputTag(bool float32Output) => float32Output ? "_f32out" : "";

    /// <summary>The TN tensor-core kernels' output template values: OUT_TAG (entry-name part), OUT_SHIFT (log2 of the
    /// output element's bytes: 1 dtype, 2 f32).</summary>
    internal static IEnumerable<KeyValuePair<string, string>> OutputValues(bool float32Output)
    {
        yield return new("OUT_TAG", OutputTag(float32Output));
        yield return new("OUT_SHIFT", float32Output ? "2" : "1");
    }

    /// <summary>Short layout tag used in file and entry names.</summary>
    public static string Tag(GroupedGemmLayout layout) => layout switch
    {
        GroupedGemmLayout.ForwardNT => "nt",
        GroupedGemmLayout.BackwardDataNN => "nn",
        GroupedGemmLayout.BackwardWeightTN => "tn",
        _ => throw new ArgumentOutOfRangeException(nameof(layout), layout, "Expected ForwardNT, BackwardDataNN or BackwardWeightTN."),
    };

    internal static Type ArgsTypeOf(GroupedGemmLayout layout) => layout switch
    {
        GroupedGemmLayout.ForwardNT => typeof(GroupedGemmForwardArgs),
        GroupedGemmLayout.BackwardDataNN => typeof(GroupedGemmBackwardDataArgs),
        GroupedGemmLayout.BackwardWeightTN => typeof(GroupedGemmBackwardWeightArgs),
        _ => throw new ArgumentOutOfRangeException(nameof(layout), layout, "Expected ForwardNT, BackwardDataNN or BackwardWeightTN."),
    };

    /// <summary>The primary instruction family of a storage dtype (bf16/fp16 fall back to FFMA for unaligned shapes).</summary>
    public static GemmMath MathFor(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => GemmMath.Ffma,
        ScalarType.BFloat16 or ScalarType.Float16 => GemmMath.MmaSm80,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Expected Float32, Float16 or BFloat16."),
    };

    /// <summary>
    /// Every specialisation the library can load: each layout x dtype x candidate configuration, plus the SIMT
    /// kernel for bf16/fp16 (the fallback for N or K not a multiple of 8 or operands not 16-byte aligned).
    /// </summary>
    public static IEnumerable<GroupedGemmSpec> All()
    {
        foreach (GroupedGemmLayout layout in Enum.GetValues<GroupedGemmLayout>())
            foreach (ScalarType dtype in new[] { ScalarType.Float32, ScalarType.Float16, ScalarType.BFloat16 })
            {
                if (dtype != ScalarType.Float32) yield return Create(layout, dtype, GemmConfig.Ffma64x64);
                foreach (GemmConfig config in CandidateConfigs(layout, dtype))
                    yield return Create(layout, dtype, config);
                foreach (GemmConfig config in Float32OutputCandidates(layout, dtype, sm90a: true))
                    yield return Create(layout, dtype, config, float32Output: true);
                foreach (GemmConfig config in GroupedGemmSm90aSpecs.Candidates(layout, dtype))
                {
                    yield return Create(layout, dtype, config);
                    foreach (GroupedGemmEpilogue fused in GroupedGemmSm90aSpecs.FusedEpilogues(layout))
                        if (!(config.StagedEpilogue && fused == GroupedGemmEpilogue.DSwiGlu)) // runs as its register-store twin
                            yield return Create(layout, dtype, config, fused);
                }
            }
    }

    /// <summary>The configurations autotuning may time for <paramref name="dtype"/> (at least 3 for the tensor-core path).</summary>
    public static IReadOnlyList<GemmConfig> CandidateConfigs(ScalarType dtype) => MathFor(dtype) switch
    {
        GemmMath.Ffma => FfmaCandidates,
        _ => MmaCandidates,
    };

    /// <summary>The configurations autotuning may time for (<paramref name="layout"/>, <paramref name="dtype"/>): those of
    /// <see cref="CandidateConfigs(ScalarType)"/> (every layout), then for the tensor-core kernels the layout's
    /// BlockK = 64 tiles (<see cref="NtWideCandidates"/>, <see cref="BackwardWideCandidates"/>).</summary>
    public static IReadOnlyList<GemmConfig> CandidateConfigs(GroupedGemmLayout layout, ScalarType dtype)
    {
        Tag(layout); // validates the layout
        IReadOnlyList<GemmConfig> common = CandidateConfigs(dtype);
        if (MathFor(dtype) != GemmMath.MmaSm80) return common;
        return layout switch
        {
            GroupedGemmLayout.ForwardNT => [.. common, .. NtWideCandidates],
            GroupedGemmLayout.BackwardDataNN => [.. common, .. BackwardWideCandidates],
            _ => [.. common, .. BackwardWideCandidates.Where(c => c.BlockM * c.BlockN < 128 * 128)],
        };
    }

    // BlockK = 64 for the backward kernels, NN (dX = dY . W[e], reduction over N; W's stage [64 n][BN], .trans
    // ldmatrix, A's [BM][64], pitch 144) and TN (dW[e] = dY^T . X, reduction over the expert's 64-row chunks; both
    // stages [64 rows][BM|BN], .trans): half the pipeline steps, as NtWideCandidates; 128-row tiles first (many
    // tiles per expert at large T); autotune keeps BlockK = 32 where it wins. TN leaves out 128x128x64, which spills
    // for sm_80. Measurements behind these lists: docs/PERF.md ("Notes moved out of the code").
    private static readonly GemmConfig[] BackwardWideCandidates =
    [
        GemmConfig.Mma(128, 128, 3, GemmConfig.MmaBlockKWide),
        GemmConfig.Mma(128, 64, 4, GemmConfig.MmaBlockKWide),
        GemmConfig.Mma(64, 128, 3, GemmConfig.MmaBlockKWide),
        GemmConfig.Mma(64, 64, 4, GemmConfig.MmaBlockKWide),
    ];

    // BlockK = 64 (ForwardNT): each pipeline step moves 128 B per A/W row and runs four k16 steps behind one
    // barrier, half the steps of BlockK = 32, for the latency-bound expert GEMMs of mid-size T; autotune keeps the
    // BlockK = 32 tile where this loses. The 128-row tiles stream each W tile once for experts of 65..128 rows;
    // 64x64 s3 fits 4 CTAs (8 warps) per SM.
    private static readonly GemmConfig[] NtWideCandidates =
    [
        GemmConfig.Mma(128, 128, 3, GemmConfig.MmaBlockKWide),
        GemmConfig.Mma(128, 64, 4, GemmConfig.MmaBlockKWide),
        GemmConfig.Mma(64, 128, 4, GemmConfig.MmaBlockKWide),
        GemmConfig.Mma(64, 128, 3, GemmConfig.MmaBlockKWide),
        GemmConfig.Mma(64, 64, 4, GemmConfig.MmaBlockKWide),
        GemmConfig.Mma(64, 64, 3, GemmConfig.MmaBlockKWide),
        GemmConfig.Mma(64, 32, 6, GemmConfig.MmaBlockKWide),
    ];

    private static readonly GemmConfig[] FfmaCandidates = [GemmConfig.Ffma64x64];

    // Largest tile first: 128x128 for many rows per expert, down to 64x32 (1 warp, 8 stages) for decode, where
    // the GEMM streams W and the CTA count (and bytes in flight) matters more than reuse. The shallower 64-row
    // variants (s3, s4) trade a stage for resident CTAs, for memory-bound prefill.
    private static readonly GemmConfig[] MmaCandidates =
    [
        GemmConfig.Mma(128, 128, 4),
        GemmConfig.Mma(128, 64, 4),
        GemmConfig.Mma(64, 128, 4),
        GemmConfig.Mma(64, 128, 3),
        GemmConfig.Mma(64, 64, 6),
        GemmConfig.Mma(64, 64, 4),
        GemmConfig.Mma(64, 32, 8),
    ];

    /// <summary>The configurations of the f32-output TN GEMM for <paramref name="dtype"/>: the tensor-core candidates of
    /// TN (and with <paramref name="sm90a"/> the Hopper ones) that have its epilogue within their shared memory; none for
    /// other layouts or fp32 (SIMT only).</summary>
    public static IReadOnlyList<GemmConfig> Float32OutputCandidates(GroupedGemmLayout layout, ScalarType dtype, bool sm90a)
    {
        if (layout != GroupedGemmLayout.BackwardWeightTN || MathFor(dtype) != GemmMath.MmaSm80) return [];
        IEnumerable<GemmConfig> all = sm90a ? CandidateConfigs(layout, dtype).Concat(GroupedGemmSm90aSpecs.Candidates(layout, dtype)) : CandidateConfigs(layout, dtype);
        return [.. all.Where(c => c.Float32OutputProblem(MathOf(c)) is null)];
    }

    /// <summary>The instruction family a configuration runs with: <see cref="GemmConfig.Ffma64x64"/> selects the SIMT
    /// kernel for any dtype; every other configuration is a tensor-core tile (bf16/fp16 only).</summary>
    public static GemmMath MathOf(GemmConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config == GemmConfig.Ffma64x64 ? GemmMath.Ffma : config.Family == GemmMath.WgmmaSm90a ? GemmMath.WgmmaSm90a : GemmMath.MmaSm80;
    }

    /// <summary>Why <paramref name="config"/> cannot run <paramref name="dtype"/> in <paramref name="layout"/>, or null when it can.</summary>
    public static string? Problem(GroupedGemmLayout layout, ScalarType dtype, GemmConfig config) =>
        Problem(dtype, config) ?? config.Problem(MathOf(config), layout);

    /// <summary>Why <paramref name="config"/> cannot run <paramref name="dtype"/>, or null when it can.</summary>
    public static string? Problem(ScalarType dtype, GemmConfig config)
    {
        GemmMath math = MathOf(config);
        if (math != GemmMath.Ffma && MathFor(dtype) == GemmMath.Ffma)
            return $"fp32 runs only the SIMT FFMA kernel, whose single configuration is {GemmConfig.Ffma64x64.Name}; got {config.Name}.";
        return config.Problem(math);
    }

    // The SIMT files use exactly these PtxDtype constants (Specialise is strict both ways).
    private static readonly string[] FfmaKeys = ["DTYPE", "SREG", "ELEM_BYTES", "ELEM_SHIFT", "CVT_S2F", "CVT_F2S"];

    private static Dictionary<string, string> FfmaValues(ScalarType dtype)
    {
        IReadOnlyDictionary<string, string> all = PtxDtype.Constants(dtype);
        return FfmaKeys.ToDictionary(key => key, key => all[key]);
    }

    private static readonly ConcurrentDictionary<GroupedGemmSpecKey, GroupedGemmSpec> Built = new();

    /// <summary>The specialisation of (layout, dtype, config), built once per process and then returned from a cache
    /// keyed by <see cref="GroupedGemmSpecKey"/> (a call's planning allocates nothing once its spec exists).</summary>
    /// <exception cref="ArgumentException">The configuration is invalid for this dtype (message says why), or a fused
    /// <paramref name="epilogue"/> with a configuration that is not sm_90a or a layout it does not belong to.</exception>
    public static GroupedGemmSpec Create(GroupedGemmLayout layout, ScalarType dtype, GemmConfig config,
        GroupedGemmEpilogue epilogue = GroupedGemmEpilogue.Plain, bool float32Output = false)
    {
        ArgumentNullException.ThrowIfNull(config);
        var key = new GroupedGemmSpecKey(MathOf(config), layout, dtype, config, epilogue, float32Output);
        if (Built.TryGetValue(key, out GroupedGemmSpec? spec)) return spec;
        // NOTE: an invalid configuration throws in Build and is never cached.
        return Built.GetOrAdd(key, Build(layout, dtype, config, epilogue, float32Output));
    }

    /// <summary>Why the f32-output TN GEMM cannot run (<paramref name="layout"/>, <paramref name="dtype"/>,
    /// <paramref name="config"/>, <paramref name="epilogue"/>), or null when it can.</summary>
    public static string? Float32OutputProblem(GroupedGemmLayout layout, ScalarType dtype, GemmConfig config, GroupedGemmEpilogue epilogue)
    {
        if (layout != GroupedGemmLayout.BackwardWeightTN) return $"only the TN (weight-gradient) GEMM stores f32; got {layout}.";
        if (epilogue != GroupedGemmEpilogue.Plain) return $"the f32 output takes the plain epilogue; got {epilogue}.";
        if (MathFor(dtype) != GemmMath.MmaSm80) return $"the f32 output is for bf16/fp16 operands (an fp32 GEMM stores f32 already); got {dtype}.";
        return Problem(dtype, config) ?? config.Float32OutputProblem(MathOf(config));
    }

    private static GroupedGemmSpec Build(GroupedGemmLayout layout, ScalarType dtype, GemmConfig config, GroupedGemmEpilogue epilogue,
        bool float32Output)
    {
        string tag = Tag(layout);
        if (Problem(layout, dtype, config) is { } problem)
            throw new ArgumentException($"Invalid {dtype.ShortName()} grouped-GEMM configuration {config.Name}: {problem}", nameof(config));
        if (float32Output && Float32OutputProblem(layout, dtype, config, epilogue) is { } f32Problem)
            throw new ArgumentException($"Invalid f32-output {dtype.ShortName()} grouped-GEMM configuration {config.Name}: {f32Problem}", nameof(config));
        GemmMath math = MathOf(config);
        if (math == GemmMath.WgmmaSm90a)
            return GroupedGemmSm90aSpecs.Create(layout, dtype, config, epilogue, float32Output);
        if (epilogue != GroupedGemmEpilogue.Plain)
            throw new ArgumentException(
                $"The {epilogue} epilogue exists on the sm_90a kernels only; {config.Name} is an {math} configuration (run the plain GEMM and the SwiGLU kernel instead).", nameof(config));
        if (math == GemmMath.Ffma)
            return new GroupedGemmSpec(layout, dtype, math, config, $"GroupedGemm/grouped_gemm_{tag}_ffma.ptx",
                $"grouped_gemm_{tag}_sm80_{dtype.ShortName()}_ffma_64x64x16", 0, FfmaValues(dtype));

        string ptxType = dtype == ScalarType.BFloat16 ? "bf16" : "f16";
        int bm = config.BlockM, bn = config.BlockN, s = config.Stages, threads = config.Threads;
        int cPitch = bn * 4 + 32;                     // fp32 C tile row: +32 B keeps v2 fragment stores conflict-free
        var v = new Dictionary<string, int>
        {
            ["BM"] = bm, ["BN"] = bn, ["STAGES"] = s, ["THREADS"] = threads, ["WARPS_N"] = bn / GemmConfig.MmaWarpTileN,
            ["WAIT_PENDING"] = s - 2, ["PIPE_ITERS_EXTRA"] = s - 1,
            ["C_PITCH"] = cPitch, ["EPI_CPR"] = bn / 8, ["EPI_RPP"] = threads / (bn / 8),
        };
        int smem;
        if (layout != GroupedGemmLayout.BackwardWeightTN) v["BM_SHIFT"] = System.Numerics.BitOperations.Log2((uint)bm); // the row tiles' scheduler
        switch (layout)
        {
            case GroupedGemmLayout.ForwardNT:
            {
                int bk = config.BlockK, kPitch = KMajorPitchOf(bk), cpr = bk / 8, ldRpi = threads / cpr;
                v["BK"] = bk; v["BK_SHIFT"] = System.Numerics.BitOperations.Log2((uint)bk); v["K32_HALVES"] = bk / 32;
                v["KPITCH"] = kPitch; v["ROW16"] = 16 * kPitch; v["ROW32"] = 32 * kPitch; v["ROW48"] = 48 * kPitch;
                v["LD_CPR_MASK"] = cpr - 1; v["LD_CPR_SHIFT"] = System.Numerics.BitOperations.Log2((uint)cpr);
                v["TAB_C_OFF"] = 8 * bm; v["TAB_S_OFF"] = 12 * bm; v["PIPE_OFF"] = 16 * bm;
                v["A_STAGE_BYTES"] = bm * kPitch; v["STAGE_BYTES"] = (bm + bn) * kPitch;
                v["A_ITERS"] = bm * cpr / threads; v["B_ITERS"] = bn * cpr / threads;
                v["LD_RPI"] = ldRpi; v["LD_RPI_SMEM"] = ldRpi * kPitch; v["LD_RPI_TAB"] = ldRpi * 8;
                smem = 16 * bm + Math.Max(s * (bm + bn) * kPitch, bm * cPitch);
                v["SCHED_OFF"] = smem;
                break;
            }
            case GroupedGemmLayout.BackwardDataNN:
            {
                int bk = config.BlockK, kPitch = KMajorPitchOf(bk), cpr = bk / 8, ldRpi = threads / cpr;
                int bPitch = bn * 2 + 16, bRpi = threads / (bn / 8);
                v["BK"] = bk; v["BK_SHIFT"] = System.Numerics.BitOperations.Log2((uint)bk); v["K32_HALVES"] = bk / 32;
                v["KPITCH"] = kPitch; v["ROW16"] = 16 * kPitch; v["ROW32"] = 32 * kPitch; v["ROW48"] = 48 * kPitch;
                v["LD_CPR_MASK"] = cpr - 1; v["LD_CPR_SHIFT"] = System.Numerics.BitOperations.Log2((uint)cpr);
                v["TAB_C_OFF"] = 8 * bm; v["PIPE_OFF"] = 12 * bm;
                v["A_STAGE_BYTES"] = bm * kPitch; v["B_PITCH"] = bPitch; v["STAGE_BYTES"] = bm * kPitch + bk * bPitch;
                v["A_ITERS"] = bm * cpr / threads; v["LD_RPI_SMEM"] = ldRpi * kPitch; v["LD_RPI_TAB"] = ldRpi * 8;
                v["B_ITERS"] = cpr * bn / threads; v["B_CPR"] = bn / 8; v["B_RPI"] = bRpi; v["B_RPI_SMEM"] = bRpi * bPitch;
                v["B_K16"] = 16 * bPitch; v["B_K16_32"] = 16 * bPitch + 32;
                v["B_K32"] = 32 * bPitch; v["B_K32_32"] = 32 * bPitch + 32;
                v["B_K48"] = 48 * bPitch; v["B_K48_32"] = 48 * bPitch + 32;
                smem = 12 * bm + Math.Max(s * (bm * kPitch + bk * bPitch), bm * cPitch);
                break;
            }
            default:
            {
                int bk = config.BlockK, cpr = bk / 8;
                int aPitch = bm * 2 + 16, bPitch = bn * 2 + 16, aRpi = threads / (bm / 8), bRpi = threads / (bn / 8);
                v["BK"] = bk; v["BK_SHIFT"] = System.Numerics.BitOperations.Log2((uint)bk); v["K32_HALVES"] = bk / 32;
                v["A_PITCH"] = aPitch; v["B_PITCH"] = bPitch; v["A_STAGE_BYTES"] = bk * aPitch; v["STAGE_BYTES"] = bk * (aPitch + bPitch);
                v["A_ITERS"] = cpr * bm / threads; v["A_CPR"] = bm / 8; v["A_RPI"] = aRpi; v["A_RPI_SMEM"] = aRpi * aPitch;
                v["B_ITERS"] = cpr * bn / threads; v["B_CPR"] = bn / 8; v["B_RPI"] = bRpi; v["B_RPI_SMEM"] = bRpi * bPitch;
                foreach (int rows in new[] { 16, 32, 48 })
                {
                    v[$"A_K{rows}"] = rows * aPitch; v[$"A_K{rows}_32"] = rows * aPitch + 32;
                    v[$"A_K{rows}_64"] = rows * aPitch + 64; v[$"A_K{rows}_96"] = rows * aPitch + 96;
                    v[$"B_K{rows}"] = rows * bPitch; v[$"B_K{rows}_32"] = rows * bPitch + 32;
                }
                smem = Math.Max(s * bk * (aPitch + bPitch), bm * cPitch);
                break;
            }
        }
        var values = v.ToDictionary(kv => kv.Key, kv => kv.Value.ToString(CultureInfo.InvariantCulture));
        values["DTYPE"] = ptxType;
        values["DTYPE_NAME"] = dtype.ShortName();
        if (layout == GroupedGemmLayout.ForwardNT)
            // NOTE: cvt.f32.bf16 needs sm_90; on sm_80 a bf16 widens by moving its bits to the high half of a b32.
            values["SCALE_WIDEN"] = dtype == ScalarType.BFloat16 ? "mov.b32 t_scale, {t_zero, t_h};" : "cvt.f32.f16 t_scale, t_h;";
        if (layout == GroupedGemmLayout.BackwardWeightTN)
        {
            foreach ((string key, string value) in OutputValues(float32Output)) values[key] = value;
            // the thread's 8 columns: the 8 f32 of the C tile as two 16-byte stores, or the 4 packed dtype pairs as one
            values["EPI_STORE"] = float32Output
                ? "st.global.v4.f32 [ep_out], {x0, x1, x2, x3};\n    st.global.v4.f32 [ep_out+16], {x4, x5, x6, x7};"
                : "st.global.v4.b32 [ep_out], {o0, o1, o2, o3};";
        }
        string entry = $"grouped_gemm_{tag}_sm80_{dtype.ShortName()}_mma_{bm}x{bn}x{config.BlockK}_s{s}{OutputTag(float32Output)}";
        return new GroupedGemmSpec(layout, dtype, math, config, $"GroupedGemm/grouped_gemm_{tag}_mma_sm80.ptx", entry, smem, values)
        {
            SharedBytesPerExpert = layout == GroupedGemmLayout.ForwardNT ? 4 : 0, // sched [E] i32
            Float32Output = float32Output,
        };
    }
}
