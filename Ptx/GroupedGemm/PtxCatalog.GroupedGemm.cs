namespace MoeNative.Ptx;

internal static partial class PtxCatalog
{
    // The grouped-GEMM specialisations: every layout x dtype x candidate configuration (GroupedGemmSpecs.All).
    static partial void AddGroupedGemm(List<PtxModuleSpec> modules)
    {
        foreach (GroupedGemmSpec spec in GroupedGemmSpecs.All())
            modules.Add(spec.ToModuleSpec());
    }
}
