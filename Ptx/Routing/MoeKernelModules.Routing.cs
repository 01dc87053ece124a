using MoeNative.Interop;

namespace MoeNative.Ptx;

// The routing kernels' PTX files (beside this file), entry names and specialisations.
internal static partial class MoeKernelModules
{
    public const string RouterFile = "Routing/router_softmax_topk.ptx";
    public const string RoutingIndicesFile = "Routing/routing_indices.ptx";
    public const string RouterLogitsGemvFile = "Routing/router_logits_gemv.ptx";
    public const string RoutingDecodeFile = "Routing/routing_decode.ptx";
    public const string RouterDwReduceFile = "Routing/router_dw_reduce.ptx";

    public static string RouterForwardEntry(ScalarType t) => $"moe_router_softmax_topk_{t.ShortName()}";
    public static string RouterBackwardEntry(ScalarType t) => $"moe_router_softmax_topk_backward_{t.ShortName()}";
    public static string RouterLogitsGemvEntry(ScalarType t) => $"moe_router_logits_gemv_{t.ShortName()}";
    public static string RoutingDecodeEntry(ScalarType t) => $"moe_routing_decode_{t.ShortName()}";
    public static string RouterDwReduceEntry(ScalarType t) => $"moe_router_dw_reduce_{t.ShortName()}";
    public const string RoutingCountEntry = "moe_routing_count_chunks_i32";
    public const string RoutingScanEntry = "moe_routing_scan_chunks_i32";
    public const string RoutingScatterEntry = "moe_routing_scatter_chunks_i32";

    public static PtxModuleSpec Router(ScalarType t) => Dtype(RouterFile, t,
        new PtxKernelSpec(RouterForwardEntry(t), typeof(RouterSoftmaxTopKArgs)),
        new PtxKernelSpec(RouterBackwardEntry(t), typeof(RouterSoftmaxTopKBackwardArgs)));

    public static PtxModuleSpec RouterDwReduce(ScalarType t) => Dtype(RouterDwReduceFile, t,
        new PtxKernelSpec(RouterDwReduceEntry(t), typeof(RouterDwReduceArgs)));

    public static PtxModuleSpec RoutingIndices() => new(ModuleName(RoutingIndicesFile, null),
        PtxTemplate.Specialise(PtxLibrary.ReadComposed(RoutingIndicesFile), new Dictionary<string, string>()),
        [new PtxKernelSpec(RoutingCountEntry, typeof(RoutingCountArgs)), new PtxKernelSpec(RoutingScanEntry, typeof(RoutingScanArgs)),
         new PtxKernelSpec(RoutingScatterEntry, typeof(RoutingScatterArgs))]);

    /// <summary>One module, both 16-bit entries (the file has no placeholders: the two entries are written out).</summary>
    public static PtxModuleSpec RouterLogitsGemv() => new(ModuleName(RouterLogitsGemvFile, null),
        PtxTemplate.Specialise(PtxLibrary.ReadComposed(RouterLogitsGemvFile), new Dictionary<string, string>()),
        [new PtxKernelSpec(RouterLogitsGemvEntry(ScalarType.BFloat16), typeof(RouterLogitsGemvArgs)),
         new PtxKernelSpec(RouterLogitsGemvEntry(ScalarType.Float16), typeof(RouterLogitsGemvArgs))]);

    /// <summary>One module, both 16-bit entries (its includes write out each dtype's entry); plain sm_80, or sm_90
    /// whose kernels let the next (programmatically launched) kernel start early.</summary>
    public static PtxModuleSpec RoutingDecode(bool programmatic) => LaunchSpecialised(RoutingDecodeFile, programmatic,
        new PtxKernelSpec(RoutingDecodeEntry(ScalarType.BFloat16), typeof(RoutingDecodeArgs)),
        new PtxKernelSpec(RoutingDecodeEntry(ScalarType.Float16), typeof(RoutingDecodeArgs)));
}
