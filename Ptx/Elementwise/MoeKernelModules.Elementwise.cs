using MoeNative.Interop;

namespace MoeNative.Ptx;

// The elementwise kernels' PTX files (beside this file), entry names and specialisations (one module per dtype).
internal static partial class MoeKernelModules
{
    public const string GatherRowsFile = "Elementwise/gather_rows.ptx";
    public const string SiluMulFile = "Elementwise/silu_mul.ptx";
    public const string TopKCombineFile = "Elementwise/topk_combine.ptx";
    public const string SumOverTopKFile = "Elementwise/sum_over_topk.ptx";

    public static string GatherRowsEntry(ScalarType t) => $"moe_gather_rows_{t.ShortName()}";
    public static string SiluMulEntry(ScalarType t) => $"moe_silu_mul_{t.ShortName()}";
    public static string SiluMulBackwardEntry(ScalarType t) => $"moe_silu_mul_backward_{t.ShortName()}";
    public static string SiluMulBackwardRoutedEntry(ScalarType t) => $"moe_silu_mul_backward_routed_{t.ShortName()}";
    public static string TopKCombineEntry(ScalarType t) => $"moe_topk_combine_{t.ShortName()}";
    public static string TopKCombineBackwardEntry(ScalarType t) => $"moe_topk_combine_backward_{t.ShortName()}";
    public static string SumOverTopKEntry(ScalarType t) => $"moe_sum_over_topk_{t.ShortName()}";

    public static PtxModuleSpec GatherRows(ScalarType t) => Dtype(GatherRowsFile, t,
        new PtxKernelSpec(GatherRowsEntry(t), typeof(GatherRowsArgs)));

    public static PtxModuleSpec SiluMul(ScalarType t) => Dtype(SiluMulFile, t,
        new PtxKernelSpec(SiluMulEntry(t), typeof(SiluMulArgs)),
        new PtxKernelSpec(SiluMulBackwardEntry(t), typeof(SiluMulBackwardArgs)),
        new PtxKernelSpec(SiluMulBackwardRoutedEntry(t), typeof(SiluMulBackwardRoutedArgs)));

    public static PtxModuleSpec TopKCombine(ScalarType t) => Dtype(TopKCombineFile, t,
        new PtxKernelSpec(TopKCombineEntry(t), typeof(TopKCombineArgs)),
        new PtxKernelSpec(TopKCombineBackwardEntry(t), typeof(TopKCombineBackwardArgs)));

    public static PtxModuleSpec SumOverTopK(ScalarType t) => Dtype(SumOverTopKFile, t,
        new PtxKernelSpec(SumOverTopKEntry(t), typeof(SumOverTopKArgs)));
}
