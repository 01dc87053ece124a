namespace MoeNative.Ptx;

/// <summary>The small MoE kernels' PTX files, their specialisations and (entry, args struct) pairs.</summary>
public static class MoeKernelModules
{
    public const string RouterFile = "Routing/router_softmax_topk.ptx";
    public const string RoutingIndicesFile = "Routing/routing_indices.ptx";
    public const string RouterLogitsGemvFile = "Routing/router_logits_gemv.ptx";
    public const string GatherRowsFile = "Elementwise/gather_rows.ptx";
    public const string SiluMulFile = "Elementwise/silu_mul.ptx";
    public const string TopKCombineFile = "Elementwise/topk_combine.ptx";
    public const string SumOverTopKFile = "Elementwise/sum_over_topk.ptx";

    public static string RouterForwardEntry(ScalarType t) => $"moe_router_softmax_topk_{t.ShortName()}";
    public static string RouterBackwardEntry(ScalarType t) => $"moe_router_softmax_topk_backward_{t.ShortName()}";
    public static string RouterLogitsGemvEntry(ScalarType t) => $"moe_router_logits_gemv_{t.ShortName()}";
    public const string RoutingCountEntry = "moe_routing_count_experts_i32";
    public const string RoutingScatterEntry = "moe_routing_scatter_stable_i32";
    public static string GatherRowsEntry(ScalarType t) => $"moe_gather_rows_{t.ShortName()}";
    public static string SiluMulEntry(ScalarType t) => $"moe_silu_mul_{t.ShortName()}";
    public static string SiluMulBackwardEntry(ScalarType t) => $"moe_silu_mul_backward_{t.ShortName()}";
    public static string TopKCombineEntry(ScalarType t) => $"moe_topk_combine_{t.ShortName()}";
    public static string TopKCombineBackwardEntry(ScalarType t) => $"moe_topk_combine_backward_{t.ShortName()}";
    public static string SumOverTopKEntry(ScalarType t) => $"moe_sum_over_topk_{t.ShortName()}";

    /// <summary>Module name = file path without extension + "." + dtype, e.g. "Elementwise/silu_mul.bf16".</summary>
    public static string ModuleName(string file, ScalarType? dtype) =>
        Path.ChangeExtension(file, null) + (dtype is { } t ? "." + t.ShortName() : "");

    public static PtxModuleSpec Router(ScalarType t) => Dtype(RouterFile, t,
        new PtxKernelSpec(RouterForwardEntry(t), typeof(RouterSoftmaxTopKArgs)),
        new PtxKernelSpec(RouterBackwardEntry(t), typeof(RouterSoftmaxTopKBackwardArgs)));

    public static PtxModuleSpec RoutingIndices() => new(ModuleName(RoutingIndicesFile, null),
        PtxTemplate.Specialise(PtxLibrary.ReadEmbedded(RoutingIndicesFile), new Dictionary<string, string>()),
        [new PtxKernelSpec(RoutingCountEntry, typeof(RoutingCountArgs)), new PtxKernelSpec(RoutingScatterEntry, typeof(RoutingScatterArgs))]);

    /// <summary>One module, both 16-bit entries (the file has no placeholders: the two entries are written out).</summary>
    public static PtxModuleSpec RouterLogitsGemv() => new(ModuleName(RouterLogitsGemvFile, null),
        PtxTemplate.Specialise(PtxLibrary.ReadEmbedded(RouterLogitsGemvFile), new Dictionary<string, string>()),
        [new PtxKernelSpec(RouterLogitsGemvEntry(ScalarType.BFloat16), typeof(RouterLogitsGemvArgs)),
         new PtxKernelSpec(RouterLogitsGemvEntry(ScalarType.Float16), typeof(RouterLogitsGemvArgs))]);

    public static PtxModuleSpec GatherRows(ScalarType t) => Dtype(GatherRowsFile, t,
        new PtxKernelSpec(GatherRowsEntry(t), typeof(GatherRowsArgs)));

    public static PtxModuleSpec SiluMul(ScalarType t) => Dtype(SiluMulFile, t,
        new PtxKernelSpec(SiluMulEntry(t), typeof(SiluMulArgs)),
        new PtxKernelSpec(SiluMulBackwardEntry(t), typeof(SiluMulBackwardArgs)));

    public static PtxModuleSpec TopKCombine(ScalarType t) => Dtype(TopKCombineFile, t,
        new PtxKernelSpec(TopKCombineEntry(t), typeof(TopKCombineArgs)),
        new PtxKernelSpec(TopKCombineBackwardEntry(t), typeof(TopKCombineBackwardArgs)));

    public static PtxModuleSpec SumOverTopK(ScalarType t) => Dtype(SumOverTopKFile, t,
        new PtxKernelSpec(SumOverTopKEntry(t), typeof(SumOverTopKArgs)));

    /// <summary>Every small-kernel specialisation (5 files x 3 dtypes + routing indices + the router GEMV).</summary>
    public static IEnumerable<PtxModuleSpec> All()
    {
        yield return RoutingIndices();
        yield return RouterLogitsGemv();
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
        string text = PtxLibrary.ReadEmbedded(file);
        IReadOnlyList<string> used = PtxTemplate.Placeholders(text);
        var values = PtxDtype.Constants(t).Where(kv => used.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
        return new(ModuleName(file, t), PtxTemplate.Specialise(text, values), kernels);
    }
}
