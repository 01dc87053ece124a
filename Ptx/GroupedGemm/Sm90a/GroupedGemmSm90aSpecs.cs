using System.Globalization;
using MoeNative.Interop;

namespace MoeNative.Ptx;

/// <summary>
/// The Hopper (sm_90a) grouped-GEMM specialisations: file, entry and template values of each (layout, dtype, tile),
/// every derived offset computed here once (the PTX headers list the same formulas), and the layout probe.
/// </summary>
internal static class GroupedGemmSm90aSpecs
{
    public const string RowsFile = "GroupedGemm/Sm90a/grouped_gemm_rows_wgmma_sm90a.ptx";
    public const string WeightGradientFile = "GroupedGemm/Sm90a/grouped_gemm_tn_wgmma_sm90a.ptx";
    public const string ProbeFile = "GroupedGemm/Sm90a/wgmma_layout_probe_sm90a.ptx";

    /// <summary>Registers per thread at entry (.maxnreg): 168 x 384 threads = 64512 of the SM's 65536.</summary>
    public const int EntryRegisters = 168;

    /// <summary>setmaxnreg targets: the producer gives registers to the consumers (56 x 128 + 224 x 256 = 64512).</summary>
    public const int ProducerRegisters = 56, ConsumerRegisters = 224;

    /// <summary>Columns of the probe's wgmma (m64n128k16).</summary>
    public const int ProbeColumns = 128;

    // 128x128 keeps 4-5 stages in flight; 128x256 halves A re-reads (GEMM1 N = 1536 = 6 x 256, GEMM2 N = 2048) with
    // 3-4 stages (48 KiB each). All 1 CTA per SM (384 threads at 168 registers). The TN kernel takes the same tiles
    // (BlockN tiles dW's K; its stages are 64 expert rows of dY^T and X).
    // The _c2 tiles run in clusters of 2 CTAs that multicast each W stage (half the W bytes out of L2: the GEMMs are
    // L2-bandwidth bound, docs/PERF.md session 4); an expert with an odd m-tile count leaves one CTA of its last pair
    // idle, so autotune decides per shape.
    private static readonly GemmConfig[] RowCandidates =
    [
        GemmConfig.Wgmma(128, 4),
        GemmConfig.Wgmma(128, 5),
        GemmConfig.Wgmma(256, 3),
        GemmConfig.Wgmma(256, 4),
        GemmConfig.Wgmma(64, 6),
        GemmConfig.Wgmma(128, 4, cluster: 2),
        GemmConfig.Wgmma(256, 4, cluster: 2),
        // the staged epilogue: the tile leaves through per-row bulk async copies while the next tile runs, staged in
        // the ring slots of its last two k-tiles (no staging area: 128x256 keeps 4 stages, 128x128 6; K > 64)
        GemmConfig.Wgmma(128, 4, staged: true),
        GemmConfig.Wgmma(256, 3, staged: true),
        GemmConfig.Wgmma(64, 6, staged: true),
        GemmConfig.Wgmma(256, 4, staged: true),
        GemmConfig.Wgmma(128, 6, staged: true),
    ];

    // TN: with its whole-tile epilogue staging (2 x 64 rows x (2 BN + 16) B: 34 / 66 KiB), 128x128 s4/s5 and 128x256
    // s3 fit; 128x128 s6 and 128x256 s4 do not (a 4th 128x256 stage measured no faster than 3 on an H200 with the
    // 18 KiB staging of v12: the mainloop is not bound by the stages in flight, docs/PERF.md v12).
    private static readonly GemmConfig[] WeightCandidates =
    [
        GemmConfig.Wgmma(128, 4),
        GemmConfig.Wgmma(128, 5),
        GemmConfig.Wgmma(256, 3),
    ];

    /// <summary>The default Hopper tile of the f32-output TN GEMM: 128x128 s4, the only TN candidate whose f32 staging
    /// (2 x 64 x 544 B) fits beside its stages (s5 and 128x256 s3 do not).</summary>
    public static GemmConfig Float32OutputDefault => WeightCandidates[0];

    /// <summary>The Hopper tiles autotuning may time for (layout, dtype): every layout (NT, NN, TN) for bf16/fp16.</summary>
    public static IReadOnlyList<GemmConfig> Candidates(GroupedGemmLayout layout, ScalarType dtype) =>
        !Enum.IsDefined(layout) || dtype is not (ScalarType.BFloat16 or ScalarType.Float16) ? []
        : layout == GroupedGemmLayout.BackwardWeightTN ? WeightCandidates : RowCandidates;

    /// <summary>The default Hopper tile: 128x256 (s4 row-tiled; s3 TN, measured even with or faster than s4 on an
    /// H200, docs/PERF.md v12, and the only 128x256 TN tile that fits its staging) when the output has at least 256
    /// columns, else 128x128 s4.</summary>
    public static GemmConfig Default(GroupedGemmLayout layout, int columns) =>
        layout == GroupedGemmLayout.BackwardWeightTN ? WeightCandidates[columns >= 256 ? 2 : 0]
        : columns >= 256 ? RowCandidates[3] : RowCandidates[0];

    /// <summary>Descriptor constant (bits 16-63) of a K-major 128B-swizzled operand: swizzle 128B (bits 62-63 = 1) |
    /// SBO 1024 (next 8 rows) | LBO 16 (unused with this swizzle); the start address is or-ed in.</summary>
    private const string KMajorDesc = "0x4000004000010000";

    /// <summary>Descriptor constant of an MN-major (N-major) 128B-swizzled operand stored as 64-column blocks of
    /// [rows][128 B]: swizzle 128B | SBO 1024 (next 8 reduction rows) | LBO 8192 (next 64-column block).</summary>
    private const string NMajorDesc = "0x4000004002000000";

    /// <summary>The fused epilogues of <paramref name="layout"/>: SwiGlu for ForwardNT, DSwiGlu for BackwardDataNN.</summary>
    public static IReadOnlyList<GroupedGemmEpilogue> FusedEpilogues(GroupedGemmLayout layout) => layout switch
    {
        GroupedGemmLayout.ForwardNT => [GroupedGemmEpilogue.SwiGlu],
        GroupedGemmLayout.BackwardDataNN => [GroupedGemmEpilogue.DSwiGlu],
        _ => [],
    };

    /// <summary>Why <paramref name="epilogue"/> cannot run on <paramref name="layout"/>, or null when it can: SwiGlu
    /// belongs to the forward NT (GEMM1), DSwiGlu to the backward-data NN (GEMM2 dX).</summary>
    public static string? EpilogueProblem(GroupedGemmLayout layout, GroupedGemmEpilogue epilogue) => epilogue switch
    {
        GroupedGemmEpilogue.Plain => null,
        GroupedGemmEpilogue.SwiGlu => layout == GroupedGemmLayout.ForwardNT ? null : $"the SwiGlu epilogue belongs to ForwardNT; got {layout}.",
        GroupedGemmEpilogue.DSwiGlu => layout == GroupedGemmLayout.BackwardDataNN ? null : $"the DSwiGlu epilogue belongs to BackwardDataNN; got {layout}.",
        _ => $"unknown epilogue {epilogue}.",
    };

    /// <summary>The specialisation of (layout, dtype, config, epilogue); the config is already validated. The dSwiGLU
    /// epilogue stores from registers: a <see cref="GemmConfig.StagedEpilogue"/> tile (autotune times GEMM2 dX as the
    /// plain NN GEMM) runs as its register-store twin.</summary>
    /// <remarks><paramref name="float32Output"/> (TN, plain, already validated): dW staged and stored as f32.</remarks>
    public static GroupedGemmSpec Create(GroupedGemmLayout layout, ScalarType dtype, GemmConfig config,
        GroupedGemmEpilogue epilogue = GroupedGemmEpilogue.Plain, bool float32Output = false)
    {
        if (epilogue == GroupedGemmEpilogue.DSwiGlu && config.StagedEpilogue) config = config with { StagedEpilogue = false };
        if (!Enum.IsDefined(layout)) throw new ArgumentOutOfRangeException(nameof(layout), layout, "Unknown grouped-GEMM layout.");
        if (dtype is not (ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentException($"The sm_90a kernels take bf16 or fp16; got {dtype}.", nameof(dtype));
        bool tn = layout == GroupedGemmLayout.BackwardWeightTN, nn = layout == GroupedGemmLayout.BackwardDataNN;
        if (EpilogueProblem(layout, epilogue) is { } badEpilogue) throw new ArgumentException(badEpilogue, nameof(epilogue));
        int bn = config.BlockN, s = config.Stages, accs = bn / 2;
        string ptxType = PtxType(dtype);
        int bOff = s * GemmConfig.WgmmaBlockM * 128, bStage = bn * 128;
        int stgOff = bOff + s * bStage, barOff = stgOff + config.WgmmaStagingBytes(layout, float32Output), tabOff = barOff + 16 * s;
        int schedOff = tabOff + GemmConfig.WgmmaRowTableBytes(layout), pitch = config.WgmmaStagingPitch;
        var values = new Dictionary<string, string>
        {
            // A: K-major rows (NT, NN; k16 step +32 B) or, for TN, dY^T read MN-major (trans-a 1; k16 step +16 rows)
            ["A_DESC"] = tn ? NMajorDesc : KMajorDesc, ["A_K16_STEP"] = tn ? "128" : "2", ["TRANS_A"] = tn ? "1" : "0",
            // B: K-major W (NT) or N-major (NN: W; TN: X rows), k16 step +32 B or +16 rows of 128 B
            ["B_DESC"] = nn || tn ? NMajorDesc : KMajorDesc, ["B_K16_STEP"] = nn || tn ? "128" : "2", ["TRANS_B"] = nn || tn ? "1" : "0",
            ["DTYPE"] = ptxType, ["DTYPE_NAME"] = dtype.ShortName(),
            ["BN"] = Int(bn), ["STAGES"] = Int(s),
            ["PRODUCER_REGS"] = Int(ProducerRegisters), ["CONSUMER_REGS"] = Int(ConsumerRegisters),
            ["B_OFF"] = Int(bOff), ["B_STAGE"] = Int(bStage), ["BAR_OFF"] = Int(barOff), ["EMPTY_OFF"] = Int(barOff + 8 * s),
            ["TAB_OFF"] = Int(tabOff), ["SCHED_OFF"] = Int(schedOff),
            ["ACC_COUNT"] = Int(accs), ["ACC_LAST"] = Int(accs - 1),
            ["ACC_LIST"] = Sm90aFragments.AccumulatorList(accs), ["ACC_ZERO"] = Sm90aFragments.AccumulatorZero(accs),
        };
        if (tn)
        {
            // the thread's 8 stage rows (8 apart: 64 B of table, 1024 B of stage) in one batch, A and BN/128 B halves
            values["ROW_LOADS"] = Sm90aFragments.ProducerRowLoads(8, 64, "stage_a", 1024, bn / 128);
            values["BM"] = Int(GemmConfig.WgmmaBlockM);
            foreach ((string key, string value) in Sm90aCluster.Single()) values[key] = value;
            values["EPI_STAGE"] = Sm90aFragments.SwizzledStagingStores(bn, float32Output ? null : ptxType);
            values["EPI_STORE"] = Sm90aFragments.TileStores(bn, float32Output ? 4 : 2);
            foreach ((string key, string value) in GroupedGemmSpecs.OutputValues(float32Output)) values[key] = value;
            values["STG_Q_SHIFT"] = float32Output ? "3" : "2";
            // the epilogue staging (dtype or f32), one [64 rows][BN columns] tile per consumer
            values["STG_OFF"] = Int(stgOff);
            values["STG_BYTES"] = Int(config.WgmmaStagingBytes(layout, float32Output) / 2);
            foreach ((string key, string value) in Sm90aRingStaging.None()) values[key] = value;
            values["STAGE_FENCE_SKIP"] = "";   // the TN stages' rows come by cp.async
        }
        else
        {
            foreach ((string key, string value) in Sm90aEpilogues.Values(epilogue, bn, ptxType, config.StagedEpilogue, config.WgmmaStagingPitch))
                values[key] = value;
            values["TAG"] = GroupedGemmSpecs.Tag(layout);
            values["STG_PITCH"] = Int(pitch);
            // 4 of the thread's 8 A rows (16 apart: 128 B of table, 2048 B of stage) per batch
            values["ROW_LOADS"] = Sm90aFragments.ProducerRowLoads(4, 128, "ld_dst", 2048, 0);
            values["B_LOAD"] = config.Cluster == 2 ? Sm90aCluster.WeightLoad(layout, bn, epilogue == GroupedGemmEpilogue.SwiGlu)
                : epilogue == GroupedGemmEpilogue.SwiGlu ? Sm90aEpilogues.SwiGluWeightLoad(bn) : Sm90aFragments.WeightLoad(layout, bn);
            foreach ((string key, string value) in Sm90aCluster.Rows(config.Cluster, bn)) values[key] = value;
            values["SCALE_WIDEN"] = dtype == ScalarType.BFloat16 ? "cvt.f32.bf16" : "cvt.f32.f16";
            values["TX_BYTES"] = Int(bStage);
            // A and W by TMA (p_a_tma): the stage holds no cp.async (generic-proxy) writes to fence before the wgmmas. Not
            // in dSwiGLU (GEMM2 dX: A = dY gathered, never by TMA; at 128x256 the live predicate costs it an 8-byte spill)
            values["STAGE_FENCE_SKIP"] = epilogue == GroupedGemmEpilogue.DSwiGlu ? ""
                : "    @a_tma bra.uni C_FENCED;            // A and W came by TMA: nothing to fence";
            foreach ((string key, string value) in Sm90aRingStaging.Rows(config.StagedEpilogue, bn, pitch, bOff))
                values[key] = value;
        }
        int shared = config.WgmmaSharedBytesOf(layout, float32Output);
        if (shared != schedOff + 1024)
            throw new InvalidOperationException($"Shared layout mismatch: {shared} vs {schedOff + 1024}.");
        string entry = $"grouped_gemm_{GroupedGemmSpecs.Tag(layout)}{Sm90aEpilogues.Tag(epilogue)}_sm90a_{dtype.ShortName()}_wgmma_128x{bn}x64_s{s}"
            + (config.Cluster == 1 ? "" : $"_c{config.Cluster}") + (config.StagedEpilogue ? "_stg" : "") + GroupedGemmSpecs.OutputTag(float32Output);
        return new GroupedGemmSpec(layout, dtype, GemmMath.WgmmaSm90a, config, tn ? WeightGradientFile : RowsFile, entry, shared, values)
        {
            SharedBytesPerExpert = 4, // sched [E] i32
            Epilogue = epilogue,
            Float32Output = float32Output,
        };
    }

    /// <summary>Entry name of the layout probe for <paramref name="dtype"/>.</summary>
    public static string ProbeEntry(ScalarType dtype) => $"wgmma_layout_probe_sm90a_{dtype.ShortName()}";

    /// <summary>The layout probe module of <paramref name="dtype"/> (bf16 or fp16).</summary>
    public static PtxModuleSpec ProbeModule(ScalarType dtype)
    {
        var values = new Dictionary<string, string>
        {
            ["DTYPE"] = PtxType(dtype), ["DTYPE_NAME"] = dtype.ShortName(),
            ["ACC_LIST"] = Sm90aFragments.AccumulatorList(ProbeColumns / 2), ["ACC_ZERO"] = Sm90aFragments.AccumulatorZero(ProbeColumns / 2),
            ["PROBE_STORES"] = Sm90aFragments.ProbeStores(ProbeColumns),
        };
        string ptx = PtxTemplate.Specialise(PtxLibrary.ReadComposed(ProbeFile), values);
        return new PtxModuleSpec($"GroupedGemm/Sm90a/wgmma_layout_probe_sm90a.{dtype.ShortName()}", ptx,
            [new PtxKernelSpec(ProbeEntry(dtype), typeof(WgmmaLayoutProbeArgs))]);
    }

    private static string PtxType(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => "bf16",
        ScalarType.Float16 => "f16",
        _ => throw new ArgumentException($"The sm_90a kernels take bf16 or fp16; got {dtype}.", nameof(dtype)),
    };

    private static string Int(int v) => v.ToString(CultureInfo.InvariantCulture);
}
