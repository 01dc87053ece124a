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
    public const string ProbeFile = "GroupedGemm/Sm90a/wgmma_layout_probe_sm90a.ptx";

    /// <summary>Registers per thread at entry (.maxnreg): 168 x 384 threads = 64512 of the SM's 65536.</summary>
    public const int EntryRegisters = 168;

    /// <summary>setmaxnreg targets: the producer gives registers to the consumers (56 x 128 + 224 x 256 = 64512).</summary>
    public const int ProducerRegisters = 56, ConsumerRegisters = 224;

    /// <summary>Columns of the probe's wgmma (m64n128k16).</summary>
    public const int ProbeColumns = 128;

    // 128x128 keeps 4-5 stages in flight; 128x256 halves A re-reads (GEMM1 N = 1536 = 6 x 256, GEMM2 N = 2048) with
    // 3-4 stages (48 KiB each). All 1 CTA per SM (384 threads at 168 registers).
    private static readonly GemmConfig[] RowCandidates =
    [
        GemmConfig.Wgmma(128, 4),
        GemmConfig.Wgmma(128, 5),
        GemmConfig.Wgmma(256, 3),
        GemmConfig.Wgmma(256, 4),
    ];

    /// <summary>The Hopper tiles autotuning may time for (layout, dtype); empty where no sm_90a kernel exists yet (TN).</summary>
    public static IReadOnlyList<GemmConfig> Candidates(GroupedGemmLayout layout, ScalarType dtype) =>
        layout is (GroupedGemmLayout.ForwardNT or GroupedGemmLayout.BackwardDataNN) && dtype is (ScalarType.BFloat16 or ScalarType.Float16)
            ? RowCandidates : [];

    /// <summary>The default Hopper tile: 128x256 when the output has at least 256 columns, else 128x128.</summary>
    public static GemmConfig Default(int columns) => columns >= 256 ? RowCandidates[3] : RowCandidates[0];

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

    /// <summary>The specialisation of (layout, dtype, config, epilogue); the config is already validated.</summary>
    public static GroupedGemmSpec Create(GroupedGemmLayout layout, ScalarType dtype, GemmConfig config,
        GroupedGemmEpilogue epilogue = GroupedGemmEpilogue.Plain)
    {
        if (layout is not (GroupedGemmLayout.ForwardNT or GroupedGemmLayout.BackwardDataNN))
            throw new ArgumentException($"No sm_90a kernel for {layout} yet.", nameof(layout));
        bool nn = layout == GroupedGemmLayout.BackwardDataNN;
        if (dtype is not (ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentException($"The sm_90a kernels take bf16 or fp16; got {dtype}.", nameof(dtype));
        if (EpilogueProblem(layout, epilogue) is { } badEpilogue) throw new ArgumentException(badEpilogue, nameof(epilogue));
        int bn = config.BlockN, s = config.Stages, accs = bn / 2;
        string ptxType = PtxType(dtype);
        int bOff = s * GemmConfig.WgmmaBlockM * 128, bStage = bn * 128;
        int barOff = bOff + s * bStage, tabOff = barOff + 16 * s, schedOff = tabOff + 8 * GemmConfig.WgmmaBlockM;
        var values = new Dictionary<string, string>
        {
            ["TAG"] = GroupedGemmSpecs.Tag(layout), ["B_LOAD"] = epilogue == GroupedGemmEpilogue.SwiGlu ? Sm90aEpilogues.SwiGluWeightLoad(bn) : Sm90aFragments.WeightLoad(layout, bn),
            // B descriptor constant: 128B swizzle | SBO 1024 | LBO 16 (K-major) or 8192 (N-major: next 64-column block)
            ["B_DESC"] = nn ? "0x4000004002000000" : "0x4000004000010000",
            ["B_K16_STEP"] = nn ? "128" : "2", ["TRANS_B"] = nn ? "1" : "0",
            ["DTYPE"] = ptxType, ["DTYPE_NAME"] = dtype.ShortName(),
            ["SCALE_WIDEN"] = dtype == ScalarType.BFloat16 ? "cvt.f32.bf16" : "cvt.f32.f16",
            ["BN"] = Int(bn), ["STAGES"] = Int(s), ["LAG"] = Int(s - 2),
            ["PRODUCER_REGS"] = Int(ProducerRegisters), ["CONSUMER_REGS"] = Int(ConsumerRegisters),
            ["BM"] = Int(GemmConfig.WgmmaBlockM),
            ["B_OFF"] = Int(bOff), ["B_STAGE"] = Int(bStage), ["BAR_OFF"] = Int(barOff), ["EMPTY_OFF"] = Int(barOff + 8 * s),
            ["TAB_OFF"] = Int(tabOff), ["SCHED_OFF"] = Int(schedOff), ["TX_BYTES"] = Int(bStage),
            ["ACC_COUNT"] = Int(accs), ["ACC_LAST"] = Int(accs - 1),
            ["ACC_LIST"] = Sm90aFragments.AccumulatorList(accs), ["ACC_ZERO"] = Sm90aFragments.AccumulatorZero(accs),
        };
        foreach ((string key, string value) in Sm90aEpilogues.Values(epilogue, bn, ptxType)) values[key] = value;
        if (config.WgmmaSharedBytes != schedOff + 1024)
            throw new InvalidOperationException($"Shared layout mismatch: {config.WgmmaSharedBytes} vs {schedOff + 1024}.");
        string entry = $"grouped_gemm_{GroupedGemmSpecs.Tag(layout)}{Sm90aEpilogues.Tag(epilogue)}_sm90a_{dtype.ShortName()}_wgmma_128x{bn}x64_s{s}";
        return new GroupedGemmSpec(layout, dtype, GemmMath.WgmmaSm90a, config, RowsFile, entry, config.WgmmaSharedBytes, values)
        {
            SharedBytesPerExpert = 4, // sched [E] i32
            Epilogue = epilogue,
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
