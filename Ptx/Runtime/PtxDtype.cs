using MoeNative.Interop;

namespace MoeNative.Ptx;

/// <summary>
/// Template constants that specialise a dtype-generic PTX file for one storage dtype (fp32 math inside).
/// A file that uses them declares <c>.reg .{{SREG}} %cv_s; .reg .f32 %cv_f; .reg .b16 %cv_zero;</c> and converts one
/// element with <c>{{CVT_S2F}}</c> (%cv_s storage bits -> %cv_f) and <c>{{CVT_F2S}}</c> (%cv_f -> %cv_s, round to nearest even).
/// <list type="table">
/// <item><term>DTYPE</term><description>bf16 | fp16 | fp32 (goes into entry names)</description></item>
/// <item><term>SREG</term><description>b16 | b32: register / ld / st type of one stored element</description></item>
/// <item><term>ELEM_BYTES</term><description>2 | 4</description></item>
/// <item><term>ELEM_SHIFT</term><description>log2(ELEM_BYTES): 1 | 2</description></item>
/// <item><term>VLD16_NC / VLD16 / VST16</term><description>move 8 elements %vs0..%vs7 (.SREG) from/to the 16-byte aligned
/// address %vaddr with 16-byte ld/st.v4.b32 (scratch %vw0..%vw3 .b32): one instruction for 16-bit dtypes (2 elements
/// per word, low half = lower address), two for fp32. VLD16_NC reads through the read-only (.nc) path.</description></item>
/// </list>
/// </summary>
internal static class PtxDtype
{
    /// <summary>The storage dtypes every dtype-generic kernel is specialised for.</summary>
    public static IReadOnlyList<ScalarType> All { get; } = [ScalarType.BFloat16, ScalarType.Float16, ScalarType.Float32];

    /// <summary>The template values for <paramref name="dtype"/>.</summary>
    public static IReadOnlyDictionary<string, string> Constants(ScalarType dtype) => dtype switch
    {
        // NOTE: cvt.f32.bf16 needs sm_90; on sm_80 a bf16 widens by placing its bits in the high half of a b32.
        ScalarType.BFloat16 => Make("bf16", "b16", 2, 1,
            "mov.b16 %cv_zero, 0; mov.b32 %cv_f, {%cv_zero, %cv_s};",
            "cvt.rn.bf16.f32 %cv_s, %cv_f;"),
        ScalarType.Float16 => Make("fp16", "b16", 2, 1,
            "cvt.f32.f16 %cv_f, %cv_s;",
            "cvt.rn.f16.f32 %cv_s, %cv_f;"),
        ScalarType.Float32 => Make("fp32", "b32", 4, 2,
            "mov.b32 %cv_f, %cv_s;",
            "mov.b32 %cv_s, %cv_f;"),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Storage dtype must be BFloat16, Float16 or Float32."),
    };

    private const string Load16Bit = "ld.global{0}.v4.b32 {{%vw0, %vw1, %vw2, %vw3}}, [%vaddr]; mov.b32 {{%vs0, %vs1}}, %vw0; " +
        "mov.b32 {{%vs2, %vs3}}, %vw1; mov.b32 {{%vs4, %vs5}}, %vw2; mov.b32 {{%vs6, %vs7}}, %vw3;";
    private const string Store16Bit = "mov.b32 %vw0, {%vs0, %vs1}; mov.b32 %vw1, {%vs2, %vs3}; mov.b32 %vw2, {%vs4, %vs5}; " +
        "mov.b32 %vw3, {%vs6, %vs7}; st.global.v4.b32 [%vaddr], {%vw0, %vw1, %vw2, %vw3};";
    private const string Load32Bit = "ld.global{0}.v4.b32 {{%vs0, %vs1, %vs2, %vs3}}, [%vaddr]; " +
        "ld.global{0}.v4.b32 {{%vs4, %vs5, %vs6, %vs7}}, [%vaddr+16];";
    private const string Store32Bit = "st.global.v4.b32 [%vaddr], {%vs0, %vs1, %vs2, %vs3}; st.global.v4.b32 [%vaddr+16], {%vs4, %vs5, %vs6, %vs7};";

    private static Dictionary<string, string> Make(string name, string sreg, int bytes, int shift, string s2f, string f2s) => new()
    {
        ["DTYPE"] = name,
        ["SREG"] = sreg,
        ["ELEM_BYTES"] = bytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["ELEM_SHIFT"] = shift.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["CVT_S2F"] = s2f,
        ["CVT_F2S"] = f2s,
        ["VLD16_NC"] = string.Format(System.Globalization.CultureInfo.InvariantCulture, bytes == 2 ? Load16Bit : Load32Bit, ".nc"),
        ["VLD16"] = string.Format(System.Globalization.CultureInfo.InvariantCulture, bytes == 2 ? Load16Bit : Load32Bit, ""),
        ["VST16"] = bytes == 2 ? Store16Bit : Store32Bit,
    };
}
