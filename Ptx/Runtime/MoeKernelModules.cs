using MoeNative.Interop;

namespace MoeNative.Ptx;

/// <summary>
/// The small MoE kernels' PTX files, their specialisations and (entry, args struct) pairs. Each family lists its
/// own beside its PTX (<c>Ptx/Routing/MoeKernelModules.Routing.cs</c>, <c>Ptx/Elementwise/MoeKernelModules.Elementwise.cs</c>);
/// this file holds the naming rule, the dtype specialisation and the list of all of them.
/// </summary>
internal static partial class MoeKernelModules
{
    /// <summary>Module name = file path without extension + "." + dtype, e.g. "Elementwise/silu_mul.bf16".</summary>
    public static string ModuleName(string file, ScalarType? dtype) =>
        Path.ChangeExtension(file, null) + (dtype is { } t ? "." + t.ShortName() : "");

    /// <summary>Every small-kernel specialisation (6 files x 3 dtypes + routing indices + the router GEMV + the one-launch decode routing and the decode kernels, each plain (sm_80) and with programmatic launch (sm_90)).</summary>
    public static IEnumerable<PtxModuleSpec> All()
    {
        yield return RoutingIndices();
        yield return RouterLogitsGemv();
        foreach (bool programmatic in new[] { false, true })
        {
            yield return RoutingDecode(programmatic);
            yield return DecodeExperts(programmatic);
        }
        foreach (ScalarType t in PtxDtype.All)
        {
            yield return Router(t);
            yield return RouterDwReduce(t);
            yield return GatherRows(t);
            yield return SiluMul(t);
            yield return TopKCombine(t);
            yield return SumOverTopK(t);
        }
    }

    // NOTE: a pure copy (gather_rows) uses no conversion snippet, so only the dtype constants a file uses are passed;
    // a placeholder without a value still fails, and so does any non-dtype value.
    private static PtxModuleSpec Dtype(string file, ScalarType t, params PtxKernelSpec[] kernels)
    {
        string text = PtxLibrary.ReadComposed(file);
        IReadOnlyList<string> used = PtxTemplate.Placeholders(text);
        var values = PtxDtype.Constants(t).Where(kv => used.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
        return new(ModuleName(file, t), PtxTemplate.Specialise(text, values), kernels);
    }

    /// <summary>Module-name suffix of the sm_90 specialisations with programmatic dependent launch.</summary>
    public const string ProgrammaticSuffix = ".sm90_pdl";

    /// <summary>
    /// <paramref name="file"/> specialised by the decode-step launch placeholders it uses: TARGET sm_90 with GRID_WAIT =
    /// griddepcontrol.wait and GRID_LAUNCH = griddepcontrol.launch_dependents when <paramref name="programmatic"/>
    /// (the kernels are then launched with programmatic stream serialisation), else TARGET sm_80 and comments; and
    /// LOGIT_WORDS, the route record's byte offset of the routing's logit words (<see cref="MoeKernels.DecodeRouteRecordLogitWords"/>,
    /// so the record's layout has one source).
    /// </summary>
    public static PtxModuleSpec LaunchSpecialised(string file, bool programmatic, params PtxKernelSpec[] kernels)
    {
        string text = PtxLibrary.ReadComposed(file);
        IReadOnlyList<string> used = PtxTemplate.Placeholders(text);
        Dictionary<string, string> all = programmatic
            ? new() { ["TARGET"] = "sm_90", ["GRID_WAIT"] = "griddepcontrol.wait;", ["GRID_LAUNCH"] = "griddepcontrol.launch_dependents;" }
            : new() { ["TARGET"] = "sm_80", ["GRID_WAIT"] = "// (griddepcontrol.wait: sm_90 module only)", ["GRID_LAUNCH"] = "// (griddepcontrol.launch_dependents: sm_90 module only)" };
        all["LOGIT_WORDS"] = MoeKernels.DecodeRouteRecordLogitWords.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var values = all.Where(kv => used.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
        return new(ModuleName(file, null) + (programmatic ? ProgrammaticSuffix : ""), PtxTemplate.Specialise(text, values), kernels);
    }
}
