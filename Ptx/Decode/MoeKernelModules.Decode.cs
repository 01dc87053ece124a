using MoeNative.Interop;

namespace MoeNative.Ptx;

// The decode kernels' PTX file (beside this file), entry names and module: one module holds the bf16 and fp16
// entries (fp32 blocks run the grouped path at every T).
internal static partial class MoeKernelModules
{
    public const string DecodeExpertsFile = "Decode/decode_experts.ptx";

    /// <summary>The storage dtypes the decode kernels have entries for.</summary>
    public static IReadOnlyList<ScalarType> DecodeDtypes { get; } = [ScalarType.BFloat16, ScalarType.Float16];

    /// <summary>Activation rows per pass over the weight rows the decode entries are written for (the _rN suffix).</summary>
    public static IReadOnlyList<int> DecodeRowsPerPass { get; } = [1, 2, 4, 8];

    public static string DecodeGateUpSiluEntry(ScalarType t, int rows) => $"moe_decode_gate_up_silu_{t.ShortName()}_r{rows}";
    public static string DecodeDownCombineEntry(ScalarType t, int rows) => $"moe_decode_down_combine_{t.ShortName()}_r{rows}";
    public static string DecodeDownTokenEntry(ScalarType t) => $"moe_decode_down_token_{t.ShortName()}";

    /// <summary>One module, both 16-bit dtypes x every pass width (its includes write out each (dtype, rows) pair's
    /// entries) and the T = 1 down entry per dtype; plain sm_80, or sm_90 with programmatic dependent launch
    /// (<paramref name="programmatic"/>).</summary>
    public static PtxModuleSpec DecodeExperts(bool programmatic) => LaunchSpecialised(DecodeExpertsFile, programmatic,
        [.. DecodeDtypes.SelectMany(t => DecodeRowsPerPass.SelectMany(rows => new[]
        {
            new PtxKernelSpec(DecodeGateUpSiluEntry(t, rows), typeof(DecodeGateUpSiluArgs)),
            new PtxKernelSpec(DecodeDownCombineEntry(t, rows), typeof(DecodeDownCombineArgs)),
        })), .. DecodeDtypes.Select(t => new PtxKernelSpec(DecodeDownTokenEntry(t), typeof(DecodeDownTokenArgs)))]);
}
