using System.Globalization;

namespace MoeNative.Ptx;

// The decode kernels' PTX file (beside this file), entry names and specialisations (bf16 and fp16 only: fp32 blocks
// run the grouped path at every T).
public static partial class MoeKernelModules
{
    public const string DecodeExpertsFile = "Decode/decode_experts.ptx";

    /// <summary>The storage dtypes the decode kernels are specialised for.</summary>
    public static IReadOnlyList<ScalarType> DecodeDtypes { get; } = [ScalarType.BFloat16, ScalarType.Float16];

    public static string DecodeGateUpSiluEntry(ScalarType t) => $"moe_decode_gate_up_silu_{t.ShortName()}";
    public static string DecodeDownCombineEntry(ScalarType t) => $"moe_decode_down_combine_{t.ShortName()}";

    public static PtxModuleSpec DecodeExperts(ScalarType t)
    {
        if (!DecodeDtypes.Contains(t))
            throw new ArgumentOutOfRangeException(nameof(t), t, "The decode kernels are specialised for BFloat16 and Float16 only.");
        string text = PtxLibrary.ReadEmbedded(DecodeExpertsFile);
        IReadOnlyList<string> used = PtxTemplate.Placeholders(text);
        var values = PtxDtype.Constants(t).Where(kv => used.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
        values["UNPACK8"] = Unpack8(t);
        return new(ModuleName(DecodeExpertsFile, t), PtxTemplate.Specialise(text, values),
            [new PtxKernelSpec(DecodeGateUpSiluEntry(t), typeof(DecodeGateUpSiluArgs)),
             new PtxKernelSpec(DecodeDownCombineEntry(t), typeof(DecodeDownCombineArgs))]);
    }

    /// <summary>
    /// UNPACK8: the words %u_w0..%u_w3 (8 elements, element 2q in the low half of word q) to fp32 %u_f0..%u_f7.
    /// bf16: the element's bits become the high half of an f32 (sm_80 has no cvt.f32.bf16); fp16: cvt through the
    /// b16 scratch %u_h0, %u_h1.
    /// </summary>
    private static string Unpack8(ScalarType t) => string.Join(" ", Enumerable.Range(0, 4).Select(q => t == ScalarType.BFloat16
        ? string.Format(CultureInfo.InvariantCulture, "shl.b32 %u_f{0}, %u_w{2}, 16; and.b32 %u_f{1}, %u_w{2}, 0xFFFF0000;", 2 * q, 2 * q + 1, q)
        : string.Format(CultureInfo.InvariantCulture,
            "mov.b32 {{%u_h0, %u_h1}}, %u_w{2}; cvt.f32.f16 %u_f{0}, %u_h0; cvt.f32.f16 %u_f{1}, %u_h1;", 2 * q, 2 * q + 1, q)));
}
