using System.Text.Json;
using MoeNative.Interop;

namespace MoeNative.Reference.IO;

/// <summary>
/// A set of safetensors files seen as one name → tensor map: a single file, or a directory (a sharded checkpoint with
/// <c>model.safetensors.index.json</c>, else every <c>*.safetensors</c> in it). Files are opened lazily.
/// </summary>
public sealed class SafetensorsCollection : IDisposable
{
    private readonly Dictionary<string, string> _fileOf;          // tensor name -> file path
    private readonly Dictionary<string, SafetensorsFile> _open = new(StringComparer.Ordinal);

    /// <summary>The file or directory given.</summary>
    public string Source { get; }

    private SafetensorsCollection(string source, Dictionary<string, string> fileOf)
    {
        Source = source;
        _fileOf = fileOf;
    }

    /// <summary>Every tensor name (sorted).</summary>
    public IEnumerable<string> Names => _fileOf.Keys.Order(StringComparer.Ordinal);

    public bool Contains(string name) => _fileOf.ContainsKey(name);

    /// <exception cref="FileNotFoundException">Neither a file nor a directory with safetensors files.</exception>
    /// <exception cref="SafetensorsFormatException">A bad index or file.</exception>
    public static SafetensorsCollection Open(string fileOrDirectory)
    {
        ArgumentNullException.ThrowIfNull(fileOrDirectory);
        var fileOf = new Dictionary<string, string>(StringComparer.Ordinal);
        var collection = new SafetensorsCollection(fileOrDirectory, fileOf);
        try
        {
            if (File.Exists(fileOrDirectory))
            {
                SafetensorsFile f = collection.OpenFile(Path.GetFullPath(fileOrDirectory));
                foreach (string name in f.Tensors.Keys) fileOf[name] = f.Path;
                return collection;
            }
            if (!Directory.Exists(fileOrDirectory))
                throw new FileNotFoundException($"Weights not found: '{fileOrDirectory}' is neither a .safetensors file nor a directory.", fileOrDirectory);
            string index = Path.Combine(fileOrDirectory, "model.safetensors.index.json");
            if (File.Exists(index))
            {
                using JsonDocument doc = ParseIndex(index);
                if (!doc.RootElement.TryGetProperty("weight_map", out JsonElement map) || map.ValueKind != JsonValueKind.Object)
                    throw new SafetensorsFormatException($"{index}: missing object 'weight_map'.");
                foreach (JsonProperty p in map.EnumerateObject())
                {
                    if (p.Value.ValueKind != JsonValueKind.String) throw new SafetensorsFormatException($"{index}: weight_map['{p.Name}'] must be a file name.");
                    fileOf[p.Name] = Path.GetFullPath(Path.Combine(fileOrDirectory, p.Value.GetString()!));
                }
                return collection;
            }
            string[] files = Directory.GetFiles(fileOrDirectory, "*.safetensors").Order(StringComparer.Ordinal).ToArray();
            if (files.Length == 0)
                throw new FileNotFoundException($"'{fileOrDirectory}' has neither model.safetensors.index.json nor any *.safetensors file.", fileOrDirectory);
            foreach (string path in files)
            {
                SafetensorsFile f = collection.OpenFile(Path.GetFullPath(path));
                foreach (string name in f.Tensors.Keys)
                    if (!fileOf.TryAdd(name, f.Path))
                        throw new SafetensorsFormatException($"Tensor '{name}' appears in both {fileOf[name]} and {f.Path}.");
            }
            return collection;
        }
        catch
        {
            collection.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Every file a weights source reads or may read: the file itself; for a folder, every file in it plus the shards
    /// its index names (they may sit elsewhere). Used to keep an output from overwriting an input.
    /// </summary>
    public static IReadOnlyList<string> SourceFiles(string fileOrDirectory)
    {
        ArgumentNullException.ThrowIfNull(fileOrDirectory);
        if (!Directory.Exists(fileOrDirectory)) return [fileOrDirectory];
        var files = new List<string>(Directory.EnumerateFiles(fileOrDirectory));
        string index = Path.Combine(fileOrDirectory, "model.safetensors.index.json");
        if (!File.Exists(index)) return files;
        using JsonDocument doc = ParseIndex(index);
        if (doc.RootElement.TryGetProperty("weight_map", out JsonElement map) && map.ValueKind == JsonValueKind.Object)
            foreach (JsonProperty p in map.EnumerateObject())
                if (p.Value.ValueKind == JsonValueKind.String) files.Add(Path.GetFullPath(Path.Combine(fileOrDirectory, p.Value.GetString()!)));
        return files;
    }

    private static JsonDocument ParseIndex(string index)
    {
        string text = InputFiles.ReadText(index, "checkpoint index", InputFiles.MaxIndexBytes);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(text); }
        catch (JsonException e) { throw new SafetensorsFormatException($"{index}: not valid JSON ({e.Message}).", e); }
        JsonValueKind kind = doc.RootElement.ValueKind;
        if (kind == JsonValueKind.Object) return doc;
        doc.Dispose();
        throw new SafetensorsFormatException($"{index}: expected a JSON object with 'weight_map', got a JSON {kind.ToString().ToLowerInvariant()}.");
    }

    private SafetensorsFile OpenFile(string path)
    {
        if (!_open.TryGetValue(path, out SafetensorsFile? f))
        {
            if (!File.Exists(path) && !Directory.Exists(path))
                throw new FileNotFoundException($"Shard '{path}' named by the index of '{Source}' does not exist.", path);
            f = SafetensorsFile.Open(path);
            _open[path] = f;
        }
        return f;
    }

    /// <summary>The file holding a tensor and its header entry.</summary>
    /// <exception cref="KeyNotFoundException">No such tensor.</exception>
    public (SafetensorsFile File, SafetensorsTensorInfo Info) Find(string name)
    {
        if (!_fileOf.TryGetValue(name, out string? path))
            throw new KeyNotFoundException($"'{Source}': no tensor named '{name}'.");
        SafetensorsFile f = OpenFile(path);
        if (!f.Tensors.TryGetValue(name, out SafetensorsTensorInfo? info))
            throw new SafetensorsFormatException($"The index of '{Source}' puts '{name}' in {path}, which does not hold it.");
        return (f, info);
    }

    /// <summary>A floating tensor of the expected shape as float (message names tensor and expected shape on mismatch).</summary>
    public float[] ReadFloat32(string name, long[] expectedShape)
    {
        (SafetensorsFile f, _) = Find(name);
        return f.ReadFloat32(name, expectedShape);
    }

    public void Dispose()
    {
        foreach (SafetensorsFile f in _open.Values) f.Dispose();
        _open.Clear();
    }
}

/// <summary>Loads one expert layer's weights by Hugging Face names.</summary>
public static class MoeCheckpoint
{
    /// <summary>The name prefix of layer L's MoE block, <c>model.layers.{L}.mlp.</c>; "" for null.</summary>
    public static string Prefix(int? layer) => layer is null ? "" : $"model.layers.{layer}.mlp.";

    /// <summary>
    /// Reads <c>{prefix}gate.weight</c> [E,H] and either the fused layout (<c>experts.gate_up_proj</c> [E,2I,H],
    /// <c>experts.down_proj</c> [E,H,I]) or the per-expert layout (<c>experts.{e}.gate_proj.weight</c> [I,H],
    /// <c>experts.{e}.up_proj.weight</c> [I,H], <c>experts.{e}.down_proj.weight</c> [H,I]), converts F32/F16/BF16 to
    /// float and rounds to <paramref name="roundTo"/>.
    /// </summary>
    /// <param name="config">The layer's shape.</param>
    /// <param name="fileOrDirectory">A .safetensors file or a checkpoint directory (sharded with an index, or not).</param>
    /// <param name="layer">Decoder layer index: names get the prefix <c>model.layers.{L}.mlp.</c>; null for bare names.</param>
    /// <param name="roundTo">Storage dtype to round the weights to.</param>
    /// <exception cref="SafetensorsFormatException">A missing tensor, wrong shape or non-floating dtype; the message names
    /// the tensor and the expected shape.</exception>
    public static MoeWeights LoadWeights(MoeConfig config, string fileOrDirectory, int? layer = null, ScalarType roundTo = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        using SafetensorsCollection files = SafetensorsCollection.Open(fileOrDirectory);
        return LoadWeights(config, files, layer, roundTo);
    }

    /// <summary>True when every tensor of the layer's expert block is stored in a dtype whose values
    /// <paramref name="dtype"/> represents exactly (the same dtype, or any float type for F32), so
    /// <see cref="LoadWeights(MoeConfig, string, int?, ScalarType)"/> makes no rounded copy. Reads headers only.</summary>
    public static bool StoredExactlyIn(MoeConfig config, string fileOrDirectory, int? layer, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(config);
        using SafetensorsCollection files = SafetensorsCollection.Open(fileOrDirectory);
        return MoeCheckpointLayout.Resolve(config, files, layer).All(p => dtype == ScalarType.Float32 || p.FileDType == dtype);
    }

    /// <inheritdoc cref="LoadWeights(MoeConfig, string, int?, ScalarType)"/>
    public static MoeWeights LoadWeights(MoeConfig config, SafetensorsCollection files, int? layer = null, ScalarType roundTo = ScalarType.Float32)
    {
        IReadOnlyList<MoeTensorPlacement> placements = MoeCheckpointLayout.Resolve(config, files, layer); // every tensor checked first
        var router = new float[config.GateElements];
        var gateUp = new float[config.GateUpProjElements];
        var down = new float[config.DownProjElements];
        foreach (MoeTensorPlacement p in placements)
        {
            float[] target = p.Part switch { MoeWeightPart.Router => router, MoeWeightPart.GateUp => gateUp, _ => down };
            p.File.ReadFloat32(p.Name, target.AsSpan(checked((int)p.ElementOffset), checked((int)p.ElementCount)));
        }
        return new MoeWeights(config, router, gateUp, down).RoundedTo(roundTo);
    }
}
