using System.Diagnostics.CodeAnalysis;

namespace MoeNative.Ptx;

/// <summary>One kernel of a module: its .entry name and the C# struct its launches pass (declared once).</summary>
internal sealed record PtxKernelSpec(
    string EntryName,
    [property: DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicFields | DynamicallyAccessedMemberTypes.NonPublicFields)] Type ArgsType);

/// <summary>One loadable module: a unique name (also the dump file name), its specialised PTX text and its kernels.</summary>
internal sealed record PtxModuleSpec(string ModuleName, string Ptx, IReadOnlyList<PtxKernelSpec> Kernels)
{
    public override string ToString() => ModuleName;
}

/// <summary>
/// Every (module, specialised PTX text) the library can load. Used by <c>moenative ptx dump</c>, tools/ptx/check.sh
/// and the CPU test that checks each args struct against its .entry. Small kernels (routing, elementwise) are listed
/// here; the grouped GEMM adds its specialisations by implementing <see cref="AddGroupedGemm"/> in its own file
/// (<c>static partial void AddGroupedGemm(List&lt;PtxModuleSpec&gt; modules)</c> inside <c>partial class PtxCatalog</c>).
/// </summary>
internal static partial class PtxCatalog
{
    /// <summary>All specialisations, sorted by module name; module names are unique.</summary>
    public static IReadOnlyList<PtxModuleSpec> All()
    {
        var modules = new List<PtxModuleSpec>();
        modules.AddRange(MoeKernelModules.All());
        modules.AddRange(DtypeConvertModules.All());
        AddGroupedGemm(modules);
        var duplicate = modules.GroupBy(m => m.ModuleName).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new InvalidOperationException($"Duplicate PTX module name {duplicate.Key} in the catalog.");
        return modules.OrderBy(m => m.ModuleName, StringComparer.Ordinal).ToArray();
    }

    /// <summary>Implemented by the grouped-GEMM code (optional): appends its module specialisations.</summary>
    static partial void AddGroupedGemm(List<PtxModuleSpec> modules);
}
