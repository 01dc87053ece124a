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

    /// <summary>Every small-kernel specialisation (5 files x 3 dtypes + routing indices + the router GEMV + the one-launch decode routing + the decode kernels x 2 dtypes).</summary>
    public static IEnumerable<PtxModuleSpec> All()
    {
        yield return RoutingIndices();
        yield return RouterLogitsGemv();
        yield return RoutingDecode();
        yield return DecodeExperts();
        foreach (ScalarType t in PtxDtype.All)
        {
            yield return Router(t);
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
}
