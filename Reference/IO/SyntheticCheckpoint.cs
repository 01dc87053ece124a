using System.Text.Json;

namespace MoeNative.Reference.IO;

/// <summary>How the expert weights of a checkpoint are named.</summary>
public enum CheckpointLayout
{
    /// <summary>Hugging Face per-expert names: <c>experts.{e}.gate_proj.weight</c> [I,H], <c>up_proj</c>, <c>down_proj</c> [H,I].</summary>
    PerExpert,
    /// <summary>Fused names: <c>experts.gate_up_proj</c> [E,2I,H], <c>experts.down_proj</c> [E,H,I].</summary>
    Fused,
}

/// <summary>
/// Writes a synthetic checkpoint folder with the MoE layers of a model (no attention or embeddings): a Hugging Face
/// <c>config.json</c> (model_type qwen3_moe), one shard per layer <c>model-{L+1:00000}-of-{N:00000}.safetensors</c> and
/// <c>model.safetensors.index.json</c>. Values are uniform in ±√3/√fan_in (standard deviation 1/√fan_in, the scale of
/// <see cref="MoeWeights.Random"/>), drawn from a counter-based hash of (seed, layer, tensor, element), so they are
/// generated chunk by chunk while writing (memory: one chunk) and any value can be recomputed (<see cref="Value"/>).
/// </summary>
public static class SyntheticCheckpoint
{
    private const int ChunkElements = 1 << 20;

    /// <summary>Writes the folder; returns the bytes of tensor data written.</summary>
    /// <param name="folder">Created if missing; existing files of the same names are replaced (atomically, one by one).</param>
    /// <param name="config">Layer shape.</param>
    /// <param name="layers">Number of decoder layers, all MoE.</param>
    /// <param name="dtype">F32, F16 or BF16.</param>
    /// <param name="layout">Per-expert (Hugging Face) or fused names.</param>
    /// <param name="seed">Seed of every value.</param>
    /// <param name="onLayer">Called after each layer's shard is written, with the layer index.</param>
    public static long Write(string folder, MoeConfig config, int layers, SafetensorsDType dtype, CheckpointLayout layout, int seed,
        Action<int>? onLayer = null)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(layers);
        if (dtype.ToScalarType() is null) throw new ArgumentException($"Weights must be F32, F16 or BF16, got {dtype}.", nameof(dtype));
        Directory.CreateDirectory(folder);
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        long total = 0;
        for (int l = 0; l < layers; l++)
        {
            string shard = $"model-{l + 1:00000}-of-{layers:00000}.safetensors";
            List<SafetensorsEntry> entries = LayerEntries(config, l, dtype, layout, seed);
            SafetensorsWriter.Write(Path.Combine(folder, shard), entries, new Dictionary<string, string> { ["format"] = "pt" });
            foreach (SafetensorsEntry e in entries)
            {
                weightMap[e.Name] = shard;
                total += e.ByteLength;
            }
            onLayer?.Invoke(l);
        }
        WriteJson(Path.Combine(folder, "model.safetensors.index.json"), json =>
        {
            json.WriteStartObject("metadata");
            json.WriteNumber("total_size", total);
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (var (name, file) in weightMap) json.WriteString(name, file);
            json.WriteEndObject();
        });
        WriteJson(Path.Combine(folder, "config.json"), json =>
        {
            json.WriteString("model_type", "qwen3_moe");
            json.WriteNumber("hidden_size", config.HiddenSize);
            json.WriteNumber("moe_intermediate_size", config.IntermediateSize);
            json.WriteNumber("num_experts", config.NumExperts);
            json.WriteNumber("num_experts_per_tok", config.TopK);
            json.WriteBoolean("norm_topk_prob", config.NormTopKProb);
            json.WriteString("hidden_act", config.HiddenAct);
            json.WriteNumber("num_hidden_layers", layers);
            json.WriteNumber("decoder_sparse_step", 1);
            json.WriteString("torch_dtype", dtype switch { SafetensorsDType.BF16 => "bfloat16", SafetensorsDType.F16 => "float16", _ => "float32" });
        });
        return total;
    }

    /// <summary>
    /// Element <paramref name="index"/> of tensor <paramref name="tensor"/> of layer <paramref name="layer"/> before rounding to
    /// the file's dtype: uniform in [−√3·scale, √3·scale). Tensor ids: 0 router, then per-expert 1 + 3e (gate), 2 + 3e (up),
    /// 3 + 3e (down); the fused layout stores exactly those values (gate_up rows of expert e = its gate then up rows).
    /// </summary>
    public static float Value(int seed, int layer, int tensor, long index, float scale)
    {
        ulong x = Mix((ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ ((ulong)(uint)layer << 40) ^ ((ulong)(uint)tensor << 20) ^ 0xD1B54A32D192ED03UL);
        x = Mix(x ^ (ulong)index);
        double u = (x >> 11) * (1.0 / (1UL << 53)); // [0, 1)
        return (float)((2 * u - 1) * Math.Sqrt(3) * scale);
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static List<SafetensorsEntry> LayerEntries(MoeConfig c, int layer, SafetensorsDType dtype, CheckpointLayout layout, int seed)
    {
        string prefix = MoeCheckpoint.Prefix(layer);
        long e = c.NumExperts, h = c.HiddenSize, i = c.IntermediateSize, ih = i * h;
        float hs = 1f / MathF.Sqrt(c.HiddenSize), isd = 1f / MathF.Sqrt(c.IntermediateSize);
        var entries = new List<SafetensorsEntry>
        {
            Generated(prefix + "gate.weight", [e, h], dtype, n => Value(seed, layer, 0, n, hs)),
        };
        if (layout == CheckpointLayout.PerExpert)
        {
            for (int x = 0; x < e; x++)
            {
                int id = 1 + 3 * x;
                entries.Add(Generated($"{prefix}experts.{x}.gate_proj.weight", [i, h], dtype, n => Value(seed, layer, id, n, hs)));
                entries.Add(Generated($"{prefix}experts.{x}.up_proj.weight", [i, h], dtype, n => Value(seed, layer, id + 1, n, hs)));
                entries.Add(Generated($"{prefix}experts.{x}.down_proj.weight", [h, i], dtype, n => Value(seed, layer, id + 2, n, isd)));
            }
        }
        else
        {
            entries.Add(Generated(prefix + "experts.gate_up_proj", [e, 2 * i, h], dtype, n =>
            {
                long x = n / (2 * ih), r = n % (2 * ih); // expert, element within its [2I,H]
                return r < ih ? Value(seed, layer, (int)(1 + 3 * x), r, hs) : Value(seed, layer, (int)(2 + 3 * x), r - ih, hs);
            }));
            entries.Add(Generated(prefix + "experts.down_proj", [e, h, i], dtype, n => Value(seed, layer, (int)(3 + 3 * (n / ih)), n % ih, isd)));
        }
        return entries;
    }

    /// <summary>A tensor whose value n is <paramref name="value"/>(n), generated (in parallel) one chunk at a time while writing.</summary>
    private static SafetensorsEntry Generated(string name, long[] shape, SafetensorsDType dtype, Func<long, float> value)
    {
        long count = shape.Aggregate(1L, (a, b) => a * b);
        return SafetensorsEntry.FromWriter(name, dtype, shape, stream =>
        {
            var chunk = new float[Math.Min(count, ChunkElements)];
            for (long start = 0; start < count; start += chunk.Length)
            {
                int n = (int)Math.Min(chunk.Length, count - start);
                long first = start;
                StoragePrecision.ParallelChunks(n, (s0, len) =>
                {
                    for (int k = s0; k < s0 + len; k++) chunk[k] = value(first + k);
                }, chunk: 1 << 16);
                SafetensorsEntry.WriteFloats(stream, chunk.AsSpan(0, n), dtype);
            }
        });
    }

    private static void WriteJson(string path, Action<Utf8JsonWriter> body)
    {
        string temp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".json-{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = File.Create(temp))
            using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
            {
                json.WriteStartObject();
                body(json);
                json.WriteEndObject();
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }
}
