using MoeNative.Interop;

namespace MoeNative.Ptx;

// The decode kernels' PTX file (beside this file), entry names and module: one module holds the bf16 and fp16
// entries (fp32 blocks run the grouped path at every T).
internal static partial class MoeKernelModules
{
    public const string DecodeExpertsFile = "Decode/decode_experts.ptx";

    /// <summary>The storage dtypes the decode kernels have entries for.</summary>
    public static IReadOnlyList<ScalarType> DecodeDtypes { get; } = [ScalarType.BFloat16, ScalarType.Float16];

    public static string DecodeGateUpSiluEntry(ScalarType t) => $"moe_decode_gate_up_silu_{t.ShortName()}";
    public static string DecodeDownCombineEntry(ScalarType t) => $"moe_decode_down_combine_{t.ShortName()}";

    /// <summary>One module, both 16-bit dtypes (the file has no placeholders: its includes write out each dtype's entries).</summary>
    public static PtxModuleSpec DecodeExperts() => new(ModuleName(DecodeExpertsFile, null),
        PtxTemplate.Specialise(PtxLibrary.ReadComposed(DecodeExpertsFile), new Dictionary<string, string>()),
        [.. DecodeDtypes.SelectMany(t => new[]
        {
            new PtxKernelSpec(DecodeGateUpSiluEntry(t), typeof(DecodeGateUpSiluArgs)),
            new PtxKernelSpec(DecodeDownCombineEntry(t), typeof(DecodeDownCombineArgs)),
        })]);
}
