using System.Diagnostics;
using MoeNative.Interop;
using MoeNative.Reference;
using MoeNative.Reference.IO;

namespace MoeNative.Blocks;

/// <summary>
/// Every MoE layer of a checkpoint folder (shards + <c>model.safetensors.index.json</c>, or a single file) loaded once
/// onto the device, one <see cref="Qwen3MoeDeviceWeights"/> per decoder layer, in one storage dtype. The files are
/// opened once; every layer's tensors are resolved and checked (names, shapes, dtypes) and the device memory needed
/// is compared with the free memory before anything is allocated; then memory-mapped bytes stream through two pinned
/// staging chunks (converted on the GPU when the file's dtype differs). Disposing frees every layer.
/// </summary>
public sealed class Qwen3MoeModelWeights : IDisposable
{
    private readonly Dictionary<int, Qwen3MoeDeviceWeights> _layers;

    private Qwen3MoeModelWeights(MoeConfig config, ScalarType dtype, Dictionary<int, Qwen3MoeDeviceWeights> layers, CheckpointLoadStats stats)
    {
        Config = config;
        DType = dtype;
        _layers = layers;
        Layers = layers.Keys.Order().ToArray();
        LoadStats = stats;
    }

    public MoeConfig Config { get; }
    public ScalarType DType { get; }

    /// <summary>The decoder layer indices loaded, ascending.</summary>
    public IReadOnlyList<int> Layers { get; }

    /// <summary>Time, bytes, rate and host memory of the load.</summary>
    public CheckpointLoadStats LoadStats { get; }

    /// <summary>Device bytes of every layer.</summary>
    public long SizeInBytes => _layers.Values.Sum(w => w.SizeInBytes);

    /// <summary>The weights of decoder layer <paramref name="layer"/> (owned by this object).</summary>
    /// <exception cref="KeyNotFoundException">The layer was not loaded (the message lists those that were).</exception>
    public Qwen3MoeDeviceWeights Layer(int layer) => _layers.TryGetValue(layer, out Qwen3MoeDeviceWeights? w) ? w
        : throw new KeyNotFoundException($"Layer {layer} was not loaded; loaded: {string.Join(",", Layers)}.");

    /// <summary>Loads every MoE layer (or <see cref="CheckpointLoadOptions.Layers"/>) of <paramref name="checkpoint"/>.</summary>
    /// <param name="context">Device to load onto.</param>
    /// <param name="config">Layer shape (e.g. from the folder's config.json).</param>
    /// <param name="checkpoint">A checkpoint folder or a .safetensors file with <c>model.layers.L.mlp.*</c> names.</param>
    /// <param name="dtype">Storage dtype on the device.</param>
    /// <param name="options">Staging chunk size, progress callback, layer subset.</param>
    /// <exception cref="SafetensorsFormatException">No MoE layer, a missing layer, or a bad tensor (named).</exception>
    /// <exception cref="InvalidOperationException">The layers need more device memory than is free (both named).</exception>
    public static Qwen3MoeModelWeights Load(CudaContext context, MoeConfig config, string checkpoint, ScalarType dtype,
        CheckpointLoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(checkpoint);
        config.Validate();
        options ??= new CheckpointLoadOptions();
        long baseline = ProcessMemory.AnonymousResidentBytes(), peak = baseline;
        var clock = Stopwatch.StartNew();
        using SafetensorsCollection files = SafetensorsCollection.Open(checkpoint);

        IReadOnlyList<int> present = MoeCheckpointLayout.MoeLayers(files);
        if (present.Count == 0)
            throw new SafetensorsFormatException($"'{checkpoint}': no MoE layer (no tensor named model.layers.L.mlp.gate.weight).");
        IReadOnlyList<int> layers = options.Layers ?? present;
        foreach (int l in layers)
            if (!present.Contains(l))
                throw new SafetensorsFormatException($"'{checkpoint}': layer {l} has no MoE block; MoE layers: {string.Join(",", present)}.");
        var plans = layers.Distinct().Select(l => (Layer: l, Placements: MoeCheckpointLayout.Resolve(config, files, l))).ToArray();
        long fileBytes = plans.Sum(p => p.Placements.Sum(t => t.ByteLength));
        long perLayer = checked((config.GateElements + config.GateUpProjElements + config.DownProjElements) * dtype.SizeOf());
        long deviceBytes = checked(perLayer * plans.Length);
        CheckFits(deviceBytes, context.GetMemoryInfo().FreeBytes, plans.Length, config, dtype, context.Name);

        var loaded = new Dictionary<int, Qwen3MoeDeviceWeights>();
        try
        {
            using var target = new DeviceStagingTarget(context, options.ChunkBytes, dtype);
            long done = 0;
            for (int n = 0; n < plans.Length; n++)
            {
                int layer = plans[n].Layer, layersDone = n;
                loaded[layer] = Qwen3MoeDeviceWeights.Stream(context, config, dtype, plans[n].Placements, target, bytes =>
                {
                    done += bytes;
                    peak = Math.Max(peak, ProcessMemory.AnonymousResidentBytes());
                    options.Progress?.Invoke(new CheckpointLoadProgress(done, fileBytes, layer, layersDone, plans.Length, clock.Elapsed));
                }, options.RequireFinite);
                options.Progress?.Invoke(new CheckpointLoadProgress(done, fileBytes, layer, n + 1, plans.Length, clock.Elapsed));
            }
            peak = Math.Max(peak, ProcessMemory.AnonymousResidentBytes());
            var stats = new CheckpointLoadStats(fileBytes, deviceBytes, clock.Elapsed, target.PinnedBytes, baseline, peak);
            return new Qwen3MoeModelWeights(config, dtype, loaded, stats);
        }
        catch
        {
            foreach (Qwen3MoeDeviceWeights w in loaded.Values) w.Dispose();
            throw;
        }
    }

    /// <exception cref="InvalidOperationException"><paramref name="deviceBytes"/> &gt; <paramref name="freeBytes"/> (both named, in GB).</exception>
    internal static void CheckFits(long deviceBytes, long freeBytes, int layers, MoeConfig config, ScalarType dtype, string device)
    {
        if (deviceBytes > freeBytes)
            throw new InvalidOperationException(
                $"Loading {layers} layers of {config} in {dtype.ShortName()} needs {deviceBytes / 1e9:0.00} GB of device memory; {freeBytes / 1e9:0.00} GB are free on {device}.");
    }

    public void Dispose()
    {
        foreach (Qwen3MoeDeviceWeights w in _layers.Values) w.Dispose();
    }
}
