using System.Reflection;
using System.Text.Json;

namespace MoeNative.Reference;

/// <summary>
/// Shape and routing options of one Qwen3-MoE expert layer (the fields of a Hugging Face <c>config.json</c> that the
/// expert block reads; every other field is ignored).
/// Dimension legend used across MoeNative: T tokens, H <see cref="HiddenSize"/>, I <see cref="IntermediateSize"/>,
/// E <see cref="NumExperts"/>, k <see cref="TopK"/>.
/// </summary>
/// <param name="HiddenSize">H, <c>hidden_size</c>.</param>
/// <param name="IntermediateSize">I, <c>moe_intermediate_size</c> (per expert).</param>
/// <param name="NumExperts">E, <c>num_experts</c>.</param>
/// <param name="TopK">k, <c>num_experts_per_tok</c>.</param>
/// <param name="NormTopKProb"><c>norm_topk_prob</c>: renormalise the top-k probabilities to sum to 1.</param>
/// <param name="HiddenAct"><c>hidden_act</c>; only <c>silu</c> is supported.</param>
public sealed record MoeConfig(
    int HiddenSize,
    int IntermediateSize,
    int NumExperts,
    int TopK,
    bool NormTopKProb = true,
    string HiddenAct = "silu")
{
    /// <summary>Preset name or source file, for messages; null when built in code.</summary>
    public string? Name { get; init; }

    /// <summary><c>mlp_only_layers</c>: decoder layers that have a dense MLP instead of this expert block.</summary>
    public IReadOnlyList<int> MlpOnlyLayers { get; init; } = [];

    /// <summary><c>decoder_sparse_step</c>: layer L has the expert block only when (L + 1) % step == 0 (HF Qwen3-MoE).</summary>
    public int DecoderSparseStep { get; init; } = 1;

    /// <summary>Value equality, <see cref="MlpOnlyLayers"/> compared element by element.</summary>
    public bool Equals(MoeConfig? other) =>
        other is not null && HiddenSize == other.HiddenSize && IntermediateSize == other.IntermediateSize && NumExperts == other.NumExperts
        && TopK == other.TopK && NormTopKProb == other.NormTopKProb && HiddenAct == other.HiddenAct && Name == other.Name
        && DecoderSparseStep == other.DecoderSparseStep && MlpOnlyLayers.SequenceEqual(other.MlpOnlyLayers);

    public override int GetHashCode() =>
        HashCode.Combine(HashCode.Combine(HiddenSize, IntermediateSize, NumExperts, TopK, NormTopKProb, HiddenAct, Name), DecoderSparseStep, MlpOnlyLayers.Count);

    /// <summary>Throws <see cref="ArgumentException"/> when decoder layer <paramref name="layer"/> has no expert block
    /// (listed in <c>mlp_only_layers</c> or skipped by <c>decoder_sparse_step</c>); null (bare tensor names) passes.</summary>
    public void RequireExpertLayer(int? layer)
    {
        if (layer is not { } l) return;
        string where = Name is null ? "" : $" (config '{Name}')";
        if (MlpOnlyLayers.Contains(l))
            throw new ArgumentException($"layer {l} is in mlp_only_layers{where}: it has a dense MLP, not an expert block.", nameof(layer));
        if ((l + 1) % DecoderSparseStep != 0)
            throw new ArgumentException(
                $"layer {l} has a dense MLP, not an expert block: decoder_sparse_step={DecoderSparseStep}{where} puts experts in layers L with (L+1) % {DecoderSparseStep} == 0.",
                nameof(layer));
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the field unless: all sizes positive, 1 ≤ k ≤ E,
    /// <c>hidden_act</c> is <c>silu</c>, and the largest weight tensor ([E,2I,H]) fits one .NET array.</summary>
    public MoeConfig Validate()
    {
        string where = Name is null ? "" : $" (config '{Name}')";
        if (HiddenSize <= 0) throw new ArgumentException($"hidden_size must be positive, got {HiddenSize}{where}.", nameof(HiddenSize));
        if (IntermediateSize <= 0) throw new ArgumentException($"moe_intermediate_size must be positive, got {IntermediateSize}{where}.", nameof(IntermediateSize));
        if (NumExperts <= 0) throw new ArgumentException($"num_experts must be positive, got {NumExperts}{where}.", nameof(NumExperts));
        if (TopK < 1 || TopK > NumExperts)
            throw new ArgumentException($"num_experts_per_tok must be in [1, num_experts={NumExperts}], got {TopK}{where}.", nameof(TopK));
        if (!string.Equals(HiddenAct, "silu", StringComparison.Ordinal))
            throw new ArgumentException(
                $"hidden_act '{HiddenAct}' is not supported{where}: MoeNative implements the Qwen3-MoE expert MLP with silu only.",
                nameof(HiddenAct));
        long gateUp = (long)NumExperts * 2 * IntermediateSize * HiddenSize;
        if (gateUp > Array.MaxLength)
            throw new ArgumentException($"gate_up_proj [E,2I,H] = {gateUp} elements exceeds one host array{where}.", nameof(NumExperts));
        return this;
    }

    /// <summary>Elements of the router weight [E,H].</summary>
    public long GateElements => (long)NumExperts * HiddenSize;
    /// <summary>Elements of gate_up_proj [E,2I,H].</summary>
    public long GateUpProjElements => (long)NumExperts * 2 * IntermediateSize * HiddenSize;
    /// <summary>Elements of down_proj [E,H,I].</summary>
    public long DownProjElements => (long)NumExperts * HiddenSize * IntermediateSize;

    /// <summary>Checks the lengths of three weight-shaped arrays (weights or their gradients) against this config.</summary>
    /// <param name="router">Router weight. // [E,H]</param>
    /// <param name="gateUp">Stacked gate/up projections. // [E,2I,H]</param>
    /// <param name="down">Down projections. // [E,H,I]</param>
    /// <param name="routerName">Parameter name reported for <paramref name="router"/>.</param>
    /// <param name="gateUpName">Parameter name reported for <paramref name="gateUp"/>.</param>
    /// <param name="downName">Parameter name reported for <paramref name="down"/>.</param>
    /// <exception cref="ArgumentException">A length differs from its shape's; the message names the array and the shape.</exception>
    internal void CheckWeightShapes(float[] router, float[] gateUp, float[] down, string routerName, string gateUpName, string downName)
    {
        int e = NumExperts, h = HiddenSize, i = IntermediateSize;
        CheckLength(router, GateElements, routerName, $"[E={e},H={h}]");
        CheckLength(gateUp, GateUpProjElements, gateUpName, $"[E={e},2I={2 * i},H={h}]");
        CheckLength(down, DownProjElements, downName, $"[E={e},H={h},I={i}]");
    }

    private static void CheckLength(float[] a, long expected, string name, string shape)
    {
        ArgumentNullException.ThrowIfNull(a, name);
        if (a.LongLength != expected)
            throw new ArgumentException($"{name} must have shape {shape} = {expected} elements, got {a.LongLength}.", name);
    }

    public override string ToString() =>
        $"{Name ?? "config"}: H={HiddenSize} I={IntermediateSize} E={NumExperts} k={TopK} norm_topk_prob={(NormTopKProb ? "true" : "false")}";

    // ---- loading ------------------------------------------------------------------------------------------------

    /// <summary>
    /// Parses a Hugging Face <c>config.json</c> text. Required: <c>hidden_size</c>, <c>moe_intermediate_size</c>,
    /// <c>num_experts</c>, <c>num_experts_per_tok</c>; optional <c>norm_topk_prob</c> (HF default false) and
    /// <c>hidden_act</c> (default silu). A config whose top level lacks these but has <c>text_config</c> is read from
    /// there. <c>mlp_only_layers</c> and <c>decoder_sparse_step</c> are kept (<see cref="RequireExpertLayer"/>). A
    /// <c>model_type</c> other than <c>qwen3_moe</c>, a shared expert, non-softmax routing or a quantized checkpoint is
    /// refused by name (<see cref="MoeConfigSupport"/>). Other fields are ignored. The result is validated.
    /// </summary>
    /// <exception cref="FormatException">Not JSON, or a field is missing or has the wrong JSON type.</exception>
    /// <exception cref="ArgumentException">Values out of range (see <see cref="Validate"/>).</exception>
    public static MoeConfig FromJson(string json, string? sourceName = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        string src = sourceName ?? "config.json";
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new FormatException($"{src}: not valid JSON ({e.Message}).", e); }
        using (doc)
        {
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new FormatException($"{src}: expected a JSON object at the top level.");
            JsonElement top = root;
            if (!root.TryGetProperty("hidden_size", out _) && root.TryGetProperty("text_config", out JsonElement text)
                && text.ValueKind == JsonValueKind.Object)
                root = text;
            MoeConfigSupport.Check(top, root, src);
            var config = new MoeConfig(
                RequiredInt(root, "hidden_size", src),
                RequiredInt(root, "moe_intermediate_size", src),
                RequiredInt(root, "num_experts", src),
                RequiredInt(root, "num_experts_per_tok", src),
                OptionalBool(root, "norm_topk_prob", false, src),
                OptionalString(root, "hidden_act", "silu", src))
            {
                Name = sourceName,
                MlpOnlyLayers = MoeConfigSupport.MlpOnlyLayers(root, src),
                DecoderSparseStep = MoeConfigSupport.DecoderSparseStep(root, src),
            };
            return config.Validate();
        }
    }

    /// <summary>Reads a <c>config.json</c> file (or a directory holding one): a regular file of at most
    /// <see cref="IO.InputFiles.MaxConfigBytes"/>.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">Not a regular file (a FIFO, a device), too large, or not UTF-8.</exception>
    public static MoeConfig FromFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path)) path = Path.Combine(path, "config.json");
        return FromJson(IO.InputFiles.ReadText(path, "config", IO.InputFiles.MaxConfigBytes), path);
    }

    /// <summary>The config file <see cref="Resolve"/> reads for <paramref name="nameOrPath"/>; null for a preset.</summary>
    public static string? SourceFile(string nameOrPath)
    {
        ArgumentNullException.ThrowIfNull(nameOrPath);
        if (PresetNames.Any(n => string.Equals(n, nameOrPath.Trim(), StringComparison.OrdinalIgnoreCase))) return null;
        return Directory.Exists(nameOrPath) ? Path.Combine(nameOrPath, "config.json") : nameOrPath;
    }

    /// <summary>Names of the built-in presets (Reference/Presets/*.json), sorted.</summary>
    public static IReadOnlyList<string> PresetNames { get; } = LoadPresetNames();

    /// <summary>A built-in preset by name (case-insensitive), e.g. <c>qwen3-30b-a3b</c>, <c>tiny</c>.</summary>
    /// <exception cref="ArgumentException">Unknown name; the message lists the presets.</exception>
    public static MoeConfig Preset(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        string? match = PresetNames.FirstOrDefault(n => string.Equals(n, name.Trim(), StringComparison.OrdinalIgnoreCase));
        if (match is null)
            throw new ArgumentException($"Unknown config preset '{name}'; presets: {string.Join(", ", PresetNames)}.", nameof(name));
        using Stream stream = typeof(MoeConfig).Assembly.GetManifestResourceStream(ResourcePrefix + match + ".json")!;
        using var reader = new StreamReader(stream);
        return FromJson(reader.ReadToEnd(), match);
    }

    /// <summary>A preset name, or else a path to a <c>config.json</c> (or its directory).</summary>
    public static MoeConfig Resolve(string nameOrPath)
    {
        ArgumentNullException.ThrowIfNull(nameOrPath);
        if (PresetNames.Any(n => string.Equals(n, nameOrPath.Trim(), StringComparison.OrdinalIgnoreCase))) return Preset(nameOrPath);
        if (File.Exists(nameOrPath) || Directory.Exists(nameOrPath)) return FromFile(nameOrPath);
        throw new ArgumentException(
            $"'{nameOrPath}' is neither a config preset ({string.Join(", ", PresetNames)}) nor an existing config.json path.",
            nameof(nameOrPath));
    }

    private const string ResourcePrefix = "MoeNative.Reference.Presets.";

    private static string[] LoadPresetNames() => typeof(MoeConfig).Assembly.GetManifestResourceNames()
        .Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal) && n.EndsWith(".json", StringComparison.Ordinal))
        .Select(n => n[ResourcePrefix.Length..^".json".Length])
        .Order(StringComparer.Ordinal)
        .ToArray();

    private static int RequiredInt(JsonElement root, string key, string src)
    {
        if (!root.TryGetProperty(key, out JsonElement value))
            throw new FormatException($"{src}: required field '{key}' is missing.");
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out int result))
            throw new FormatException($"{src}: field '{key}' must be an integer, got {value.GetRawText()}.");
        return result;
    }

    private static bool OptionalBool(JsonElement root, string key, bool fallback, string src)
    {
        if (!root.TryGetProperty(key, out JsonElement value) || value.ValueKind == JsonValueKind.Null) return fallback;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new FormatException($"{src}: field '{key}' must be true or false, got {value.GetRawText()}."),
        };
    }

    private static string OptionalString(JsonElement root, string key, string fallback, string src)
    {
        if (!root.TryGetProperty(key, out JsonElement value) || value.ValueKind == JsonValueKind.Null) return fallback;
        if (value.ValueKind != JsonValueKind.String) throw new FormatException($"{src}: field '{key}' must be a string, got {value.GetRawText()}.");
        return value.GetString()!;
    }
}
