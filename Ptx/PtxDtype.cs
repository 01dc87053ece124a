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
/// </list>
/// </summary>
public static class PtxDtype
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

    private static Dictionary<string, string> Make(string name, string sreg, int bytes, int shift, string s2f, string f2s) => new()
    {
        ["DTYPE"] = name,
        ["SREG"] = sreg,
        ["ELEM_BYTES"] = bytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["ELEM_SHIFT"] = shift.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["CVT_S2F"] = s2f,
        ["CVT_F2S"] = f2s,
    };
}
