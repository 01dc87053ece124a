namespace MoeNative.Reference.IO;

/// <summary>What <see cref="MoeLayerRunner.Run"/> does (the CLI <c>run</c> command's arguments).</summary>
public sealed record MoeRunOptions
{
    /// <summary>A preset name or a path to a Hugging Face config.json (or its directory).</summary>
    public required string Config { get; init; }
    /// <summary>A .safetensors file or a checkpoint directory.</summary>
    public required string Weights { get; init; }
    /// <summary>Decoder layer: names get the prefix <c>model.layers.{L}.mlp.</c>; null for bare names.</summary>
    public int? Layer { get; init; }
    /// <summary>A safetensors file with <c>hidden_states</c> [T,H] or [B,S,H].</summary>
    public required string Input { get; init; }
    /// <summary>Optional safetensors file with <c>grad_output</c> of the input's shape; enables the backward.</summary>
    public string? GradOutput { get; init; }
    /// <summary>Output safetensors file (F32 tensors).</summary>
    public required string Output { get; init; }
    /// <summary>"hf" or "grouped".</summary>
    public string Implementation { get; init; } = "hf";
    /// <summary>Storage dtype to compute in.</summary>
    public ScalarType DType { get; init; } = ScalarType.BFloat16;
}

/// <summary>What a run wrote.</summary>
/// <param name="Config">The layer config used.</param>
/// <param name="Tokens">T.</param>
/// <param name="InputShape">Shape of hidden_states as read ([T,H] or [B,S,H]).</param>
/// <param name="Written">Tensor names written to the output file, with shapes.</param>
public sealed record MoeRunSummary(MoeConfig Config, int Tokens, long[] InputShape, IReadOnlyList<(string Name, long[] Shape)> Written);

/// <summary>Runs one real expert layer from files to a file: the library side of the CLI's <c>run</c>.</summary>
public static class MoeLayerRunner
{
    public const string InputName = "hidden_states";
    public const string GradOutputName = "grad_output";

    /// <summary>
    /// Loads the config, the layer's weights, <c>hidden_states</c> (and <c>grad_output</c>), runs the chosen reference
    /// on <paramref name="gemm"/> (host when null) and writes <c>output</c> (input's shape), <c>router_logits</c> [T,E]
    /// and, with a grad, <c>grad_hidden_states</c> (input's shape), <c>grad_gate</c> [E,H], <c>grad_gate_proj</c> [E,I,H],
    /// <c>grad_up_proj</c> [E,I,H], <c>grad_down_proj</c> [E,H,I], all F32.
    /// </summary>
    /// <exception cref="SafetensorsFormatException">Missing tensors, wrong shapes or dtypes (the message names the tensor).</exception>
    /// <exception cref="ArgumentException">Bad options (unknown implementation, bad config).</exception>
    public static MoeRunSummary Run(MoeRunOptions options, IGemmBackend? gemm = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        MoeConfig config = MoeConfig.Resolve(options.Config);
        MoeWeights weights = MoeCheckpoint.LoadWeights(config, options.Weights, options.Layer, options.DType);
        MoeReference block = MoeReference.Create(options.Implementation, weights, options.DType, gemm);

        (float[] x, long[] shape, float[]? dY) = ReadInputs(options, config.HiddenSize);

        MoeIntermediates fwd = block.Forward(x);
        MoeGradients? g = dY is null ? null : block.Backward(fwd, dY);
        var metadata = new Dictionary<string, string>
        {
            ["producer"] = "MoeNative.Reference",
            ["implementation"] = block.Name,
            ["dtype"] = options.DType.ShortName(),
            ["gemm"] = block.Gemm.Name,
        };
        return WriteOutputs(options.Output, config, shape, fwd, g, metadata);
    }

    /// <summary>
    /// Writes the tensors <see cref="Run"/> documents, all F32, and says what was written; shared by every
    /// implementation that runs a layer from files (the CLI's fused path too).
    /// </summary>
    /// <param name="path">Output .safetensors file.</param>
    /// <param name="config">The layer config (E, H, I of the gradient shapes).</param>
    /// <param name="inputShape">hidden_states' shape as read: [T,H] or [B,S,H]; output and grad_hidden_states get it.</param>
    /// <param name="forward">Output [T,H] and router logits [T,E].</param>
    /// <param name="gradients">The five gradients, or null for a forward-only run.</param>
    /// <param name="metadata">Safetensors metadata (producer, implementation, dtype, ...).</param>
    public static MoeRunSummary WriteOutputs(string path, MoeConfig config, long[] inputShape, MoeIntermediates forward,
        MoeGradients? gradients, IReadOnlyDictionary<string, string> metadata)
    {
        long e = config.NumExperts, h = config.HiddenSize, i = config.IntermediateSize;
        var entries = new List<SafetensorsEntry>
        {
            SafetensorsEntry.FromFloats("output", inputShape, forward.Output),
            SafetensorsEntry.FromFloats("router_logits", [forward.Tokens, e], forward.RouterLogits),
        };
        if (gradients is not null)
        {
            entries.Add(SafetensorsEntry.FromFloats("grad_hidden_states", inputShape, gradients.X));
            entries.Add(SafetensorsEntry.FromFloats("grad_gate", [e, h], gradients.Router));
            entries.Add(SafetensorsEntry.FromFloats("grad_gate_proj", [e, i, h], gradients.GateProj));
            entries.Add(SafetensorsEntry.FromFloats("grad_up_proj", [e, i, h], gradients.UpProj));
            entries.Add(SafetensorsEntry.FromFloats("grad_down_proj", [e, h, i], gradients.DownProj));
        }
        SafetensorsWriter.Write(path, entries, metadata);
        return new MoeRunSummary(config, forward.Tokens, inputShape, entries.Select(t => (t.Name, t.Shape)).ToList());
    }

    /// <summary>
    /// Reads <c>hidden_states</c> from <see cref="MoeRunOptions.Input"/> and, when <see cref="MoeRunOptions.GradOutput"/>
    /// is set, <c>grad_output</c> of the same shape.
    /// </summary>
    /// <returns>X // [T,H] (flattened [B,S,H]), its shape as stored, and dY // [T,H] or null.</returns>
    /// <exception cref="SafetensorsFormatException">A tensor is missing or has the wrong shape.</exception>
    public static (float[] X, long[] Shape, float[]? DY) ReadInputs(MoeRunOptions options, int hidden)
    {
        ArgumentNullException.ThrowIfNull(options);
        (float[] x, long[] shape) = ReadActivations(options.Input, InputName, hidden, null);
        float[]? dY = options.GradOutput is null ? null : ReadActivations(options.GradOutput, GradOutputName, hidden, shape).Values;
        return (x, shape, dY);
    }

    /// <summary>Reads a [T,H] or [B,S,H] floating tensor; returns the values and the shape.</summary>
    public static (float[] Values, long[] Shape) ReadActivations(string path, string name, int hidden, long[]? mustMatchShape)
    {
        using SafetensorsFile file = SafetensorsFile.Open(path);
        if (!file.Contains(name))
            throw new SafetensorsFormatException($"{path}: missing tensor '{name}' (expected [T,H] or [B,S,H] with H={hidden}); "
                + $"the file has {SafetensorsWriter.Describe(file.Tensors.Keys)}.");
        SafetensorsTensorInfo info = file.Info(name);
        if (info.Shape.Length is not (2 or 3) || info.Shape[^1] != hidden)
            throw new SafetensorsFormatException($"{path}: tensor '{name}' has shape {info.ShapeText}, expected [T,H] or [B,S,H] with H={hidden}.");
        if (mustMatchShape is not null && !info.Shape.AsSpan().SequenceEqual(mustMatchShape))
            throw new SafetensorsFormatException($"{path}: tensor '{name}' has shape {info.ShapeText}, expected the input's shape [{string.Join(",", mustMatchShape)}].");
        if (info.ElementCount / hidden > int.MaxValue)
            throw new SafetensorsFormatException($"{path}: tensor '{name}' {info.ShapeText} has too many tokens.");
        return (file.ReadFloat32(name, info.Shape), info.Shape);
    }
}
