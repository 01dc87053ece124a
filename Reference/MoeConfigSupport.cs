using System.Globalization;
using System.Text.Json;

namespace MoeNative.Reference;

/// <summary>
/// What a Hugging Face <c>config.json</c> may say for MoeNative to run it: the Qwen3-MoE expert block and nothing
/// that changes its math. Everything else is refused by name (never silently run with a part left out).
/// </summary>
internal static class MoeConfigSupport
{
    /// <summary>The one implemented <c>model_type</c> (HF <c>Qwen3MoeSparseMoeBlock</c>). A config without
    /// <c>model_type</c> (hand-written, the presets) is taken to be one.</summary>
    public const string ModelType = "qwen3_moe";

    /// <summary>Fields that add a shared expert (Qwen2-MoE, DeepSeek, ...); refused when non-zero.</summary>
    private static readonly string[] SharedExpertFields =
        ["shared_expert_intermediate_size", "n_shared_experts", "num_shared_experts", "moe_shared_expert_intermediate_size"];

    /// <summary>Fields that change the routing or the expert math when present with a value other than the default.</summary>
    private static readonly (string Field, string Default)[] RoutingFields =
    [
        ("scoring_func", "softmax"),
        ("topk_method", "greedy"),
        ("routed_scaling_factor", "1"),
        ("n_group", "1"),
        ("topk_group", "1"),
        ("moe_router_bias", "false"),
    ];

    /// <summary>Throws <see cref="ArgumentException"/> naming the field unless the config is a Qwen3-MoE expert
    /// block MoeNative computes exactly.</summary>
    /// <param name="top">The top-level object.</param>
    /// <param name="layer">The object the layer fields came from (<paramref name="top"/> or its <c>text_config</c>).</param>
    /// <param name="src">Source name for messages.</param>
    public static void Check(JsonElement top, JsonElement layer, string src)
    {
        string? modelType = StringField(layer, "model_type") ?? StringField(top, "model_type");
        if (modelType is not null && modelType != ModelType)
        {
            string why = modelType == "qwen2_moe"
                ? $" (Qwen2-MoE adds a gated shared expert{SharedExpertNote(layer)}, which MoeNative does not compute)"
                : "";
            throw new ArgumentException(
                $"{src}: model_type '{modelType}' is not implemented{why}; MoeNative runs the Qwen3-MoE expert block (model_type '{ModelType}') only.",
                "model_type");
        }
        foreach (string field in SharedExpertFields)
        {
            if (layer.TryGetProperty(field, out JsonElement v) && !IsZeroOrNull(v))
                throw new ArgumentException(
                    $"{src}: {field}={v.GetRawText()} asks for a shared expert, which MoeNative does not compute (Qwen3-MoE has none).", field);
        }
        foreach ((string field, string fallback) in RoutingFields)
        {
            if (layer.TryGetProperty(field, out JsonElement v) && v.ValueKind != JsonValueKind.Null && !SameValue(v, fallback))
                throw new ArgumentException(
                    $"{src}: {field}={v.GetRawText()} changes the routing; MoeNative implements softmax top-k routing only ({field} {fallback}).", field);
        }
        if (top.TryGetProperty("quantization_config", out JsonElement q) && q.ValueKind != JsonValueKind.Null)
            throw new ArgumentException($"{src}: quantization_config is set: quantized checkpoints are not supported (weights must be F32, F16 or BF16).",
                "quantization_config");
    }

    /// <summary><c>mlp_only_layers</c> (layers with a dense MLP instead of the MoE block); empty when absent.</summary>
    public static int[] MlpOnlyLayers(JsonElement layer, string src)
    {
        if (!layer.TryGetProperty("mlp_only_layers", out JsonElement v) || v.ValueKind == JsonValueKind.Null) return [];
        if (v.ValueKind != JsonValueKind.Array)
            throw new FormatException($"{src}: field 'mlp_only_layers' must be an array of layer indices, got {v.GetRawText()}.");
        var layers = new List<int>();
        foreach (JsonElement x in v.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt32(out int l))
                throw new FormatException($"{src}: field 'mlp_only_layers' must be an array of layer indices, got {v.GetRawText()}.");
            layers.Add(l);
        }
        return layers.ToArray();
    }

    /// <summary><c>decoder_sparse_step</c> (every step-th layer is an MoE block); 1 when absent.</summary>
    public static int DecoderSparseStep(JsonElement layer, string src)
    {
        if (!layer.TryGetProperty("decoder_sparse_step", out JsonElement v) || v.ValueKind == JsonValueKind.Null) return 1;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int step) || step < 1)
            throw new FormatException($"{src}: field 'decoder_sparse_step' must be a positive integer, got {v.GetRawText()}.");
        return step;
    }

    private static string SharedExpertNote(JsonElement layer) =>
        layer.TryGetProperty("shared_expert_intermediate_size", out JsonElement v) ? $": shared_expert_intermediate_size={v.GetRawText()}" : "";

    private static string? StringField(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static bool IsZeroOrNull(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Null or JsonValueKind.False => true,
        JsonValueKind.Number => v.TryGetDouble(out double d) && d == 0,
        _ => false,
    };

    private static bool SameValue(JsonElement v, string fallback) => v.ValueKind switch
    {
        JsonValueKind.String => string.Equals(v.GetString(), fallback, StringComparison.OrdinalIgnoreCase),
        JsonValueKind.Number => v.TryGetDouble(out double d)
            && double.TryParse(fallback, NumberStyles.Float, CultureInfo.InvariantCulture, out double f) && d == f,
        JsonValueKind.False => fallback == "false",
        JsonValueKind.True => fallback == "true",
        _ => false,
    };
}
