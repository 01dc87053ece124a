using MoeNative.Interop;

namespace MoeNative.Ptx;

internal static partial class PtxCatalog
{
    // The grouped-GEMM specialisations: every layout x dtype x candidate configuration (GroupedGemmSpecs.All).
    static partial void AddGroupedGemm(List<PtxModuleSpec> modules)
    {
        foreach (GroupedGemmSpec spec in GroupedGemmSpecs.All())
            modules.Add(spec.ToModuleSpec());
        // the sm_90a layout probe (a test kernel that pins the descriptor and fragment layouts)
        modules.Add(GroupedGemmSm90aSpecs.ProbeModule(ScalarType.BFloat16));
        modules.Add(GroupedGemmSm90aSpecs.ProbeModule(ScalarType.Float16));
    }
}
