using MoeNative.Interop;

namespace MoeNative.Reference.IO;

/// <summary>What <see cref="MoeLayerRunner.Run"/> does (the CLI <c>run</c> command's arguments).</summary>
internal sealed record MoeRunOptions
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
    /// <summary>Run on non-finite inputs or weights (refused by default), and write a non-finite result (still a
    /// failure: <see cref="NonFiniteResultException"/> after the write).</summary>
    public bool AllowNonFinite { get; init; }
}

/// <summary>What a run reads, validated (<see cref="MoeLayerRunner.Load"/>).</summary>
/// <param name="Weights">The layer's weights, rounded to the run's dtype.</param>
/// <param name="X">hidden_states // [T,H] (a [B,S,H] input flattened).</param>
/// <param name="Shape">hidden_states' shape as stored.</param>
/// <param name="DY">grad_output // [T,H], or null for a forward-only run.</param>
internal sealed record MoeRunInputs(MoeWeights Weights, float[] X, long[] Shape, float[]? DY)
{
    /// <summary>T.</summary>
    public int Tokens => checked((int)(X.LongLength / Weights.Config.HiddenSize));
}

/// <summary>What a run wrote.</summary>
/// <param name="Config">The layer config used.</param>
/// <param name="Tokens">T.</param>
/// <param name="InputShape">Shape of hidden_states as read ([T,H] or [B,S,H]).</param>
/// <param name="Written">Tensor names written to the output file, with shapes.</param>
internal sealed record MoeRunSummary(MoeConfig Config, int Tokens, long[] InputShape, IReadOnlyList<(string Name, long[] Shape)> Written);

/// <summary>Runs one real expert layer from files to a file: the library side of the CLI's <c>run</c>.</summary>
internal static class MoeLayerRunner
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
        if (options.Implementation.Trim().ToLowerInvariant() is not ("hf" or "grouped"))
            throw new ArgumentException($"Unknown implementation '{options.Implementation}'; expected hf or grouped.", nameof(options));
        MoeRunInputs inputs = Load(options, config);
        MoeReference block = MoeReference.Create(options.Implementation, inputs.Weights, options.DType, gemm);

        MoeIntermediates fwd = block.Forward(inputs.X);
        MoeGradients? g = inputs.DY is null ? null : block.Backward(fwd, inputs.DY);
        var metadata = new Dictionary<string, string>
        {
            ["producer"] = "MoeNative.Reference",
            ["implementation"] = block.Name,
            ["dtype"] = options.DType.ShortName(),
            ["gemm"] = block.Gemm.Name,
        };
        return WriteOutputs(options.Output, config, inputs.Shape, fwd, g, metadata, options.AllowNonFinite);
    }

    /// <summary>
    /// Reads and checks everything a run needs, cheapest checks first: the layer has an expert block; the activation
    /// headers' shapes; the host memory the run will take (before any large allocation); the weights; the activations.
    /// Unless <see cref="MoeRunOptions.AllowNonFinite"/>, a non-finite weight or activation (after rounding to the
    /// run's dtype, so an fp16 overflow counts) is refused.
    /// </summary>
    /// <exception cref="ArgumentException">The layer has a dense MLP (mlp_only_layers, decoder_sparse_step).</exception>
    /// <exception cref="SafetensorsFormatException">Missing tensors, wrong shapes or dtypes (the message names the tensor).</exception>
    /// <exception cref="InsufficientMemoryException">T is too large for the machine's free memory.</exception>
    /// <exception cref="NonFiniteInputException">A NaN or ±Inf in a weight or an activation.</exception>
    public static MoeRunInputs Load(MoeRunOptions options, MoeConfig config)
    {
        long[] shape = CheckBeforeLoading(options, config);
        MoeWeights weights = MoeCheckpoint.LoadWeights(config, options.Weights, options.Layer, options.DType);
        (float[] x, _, float[]? dY) = ReadInputs(options, config.HiddenSize);
        if (!options.AllowNonFinite)
        {
            string prefix = MoeCheckpoint.Prefix(options.Layer);
            NonFiniteValues.RequireFinite(weights.Gate, $"{options.Weights}: weight '{prefix}gate.weight'", options.DType);
            NonFiniteValues.RequireFinite(weights.GateUpProj, $"{options.Weights}: the gate/up projections ('{prefix}experts.*')", options.DType);
            NonFiniteValues.RequireFinite(weights.DownProj, $"{options.Weights}: the down projections ('{prefix}experts.*')", options.DType);
            RequireFiniteInputs(options, x, dY);
        }
        return new MoeRunInputs(weights, x, shape, dY);
    }

    /// <summary>
    /// The activations of a run whose weights are loaded elsewhere (straight to a device): the checks of
    /// <see cref="Load"/> (expert layer, shapes, host memory, non-finite values after rounding) without the host weights.
    /// </summary>
    /// <returns>X // [T,H] (flattened [B,S,H]), its shape as stored, and dY // [T,H] or null.</returns>
    public static (float[] X, long[] Shape, float[]? DY) LoadActivations(MoeRunOptions options, MoeConfig config)
    {
        CheckBeforeLoading(options, config);
        (float[] x, long[] shape, float[]? dY) = ReadInputs(options, config.HiddenSize);
        if (!options.AllowNonFinite) RequireFiniteInputs(options, x, dY);
        return (x, shape, dY);
    }

    /// <summary>The cheap checks before any large read: expert layer, activation shapes, host memory. Returns the input's shape.</summary>
    private static long[] CheckBeforeLoading(MoeRunOptions options, MoeConfig config)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(config);
        config.RequireExpertLayer(options.Layer);
        int hidden = config.HiddenSize;
        long[] shape = ActivationShape(options.Input, InputName, hidden, null);
        int weightCopies = MoeCheckpoint.StoredExactlyIn(config, options.Weights, options.Layer, options.DType) ? 1 : 2;
        MoeMemoryEstimate.RequireHostMemory(config, shape.Aggregate(1L, (a, b) => a * b) / hidden, options.GradOutput is not null,
            $"{options.Input}: tensor '{InputName}' [{string.Join(",", shape)}]", written: true, weightCopies: weightCopies);
        if (options.GradOutput is not null) ActivationShape(options.GradOutput, GradOutputName, hidden, shape);
        return shape;
    }

    private static void RequireFiniteInputs(MoeRunOptions options, float[] x, float[]? dY)
    {
        RequireFiniteRounded(x, $"{options.Input}: tensor '{InputName}'", options.DType);
        if (dY is not null) RequireFiniteRounded(dY, $"{options.GradOutput}: tensor '{GradOutputName}'", options.DType);
    }

    private static void RequireFiniteRounded(float[] values, string what, ScalarType dtype)
    {
        float[] rounded = (float[])values.Clone();
        StoragePrecision.RoundInPlace(rounded, dtype);
        NonFiniteValues.RequireFinite(rounded, what, dtype);
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
    /// <param name="allowNonFinite">Write even when a tensor holds NaN or ±Inf (then throw after the write).</param>
    /// <exception cref="NonFiniteResultException">A tensor holds NaN or ±Inf: nothing written, or (allowed) written
    /// and reported.</exception>
    /// <exception cref="SafetensorsWriteException">The file could not be written.</exception>
    public static MoeRunSummary WriteOutputs(string path, MoeConfig config, long[] inputShape, MoeIntermediates forward,
        MoeGradients? gradients, IReadOnlyDictionary<string, string> metadata, bool allowNonFinite = false)
    {
        // NOTE: grad_gate_proj / grad_up_proj are written from views of the fused gradient (no split copies: at
        // Qwen2-57B dims each half is 2.35 GB of floats).
        IReadOnlyList<ReadOnlyMemory<float>>? gateBlocks = gradients?.ProjectionBlocks(up: false), upBlocks = gradients?.ProjectionBlocks(up: true);
        var values = new List<(string, IReadOnlyList<ReadOnlyMemory<float>>)> { ("output", [forward.Output]), ("router_logits", [forward.RouterLogits]) };
        if (gradients is not null)
        {
            values.AddRange([("grad_hidden_states", [gradients.HiddenStates]), ("grad_gate", [gradients.Gate]), ("grad_gate_proj", gateBlocks!),
                ("grad_up_proj", upBlocks!), ("grad_down_proj", [gradients.DownProj])]);
        }
        IReadOnlyList<string> nonFinite = NonFiniteValues.Describe(values);
        string what = $"the run produced non-finite values in {string.Join(", ", nonFinite)}";
        if (nonFinite.Count > 0 && !allowNonFinite)
            throw new NonFiniteResultException($"{what}; nothing was written to {path}.", written: false);
        long e = config.NumExperts, h = config.HiddenSize, i = config.IntermediateSize;
        var entries = new List<SafetensorsEntry>
        {
            SafetensorsEntry.FromFloats("output", inputShape, forward.Output),
            SafetensorsEntry.FromFloats("router_logits", [forward.Tokens, e], forward.RouterLogits),
        };
        if (gradients is not null)
        {
            entries.Add(SafetensorsEntry.FromFloats("grad_hidden_states", inputShape, gradients.HiddenStates));
            entries.Add(SafetensorsEntry.FromFloats("grad_gate", [e, h], gradients.Gate));
            entries.Add(SafetensorsEntry.FromFloatBlocks("grad_gate_proj", [e, i, h], gateBlocks!));
            entries.Add(SafetensorsEntry.FromFloatBlocks("grad_up_proj", [e, i, h], upBlocks!));
            entries.Add(SafetensorsEntry.FromFloats("grad_down_proj", [e, h, i], gradients.DownProj));
        }
        SafetensorsWriter.Write(path, entries, metadata);
        if (nonFinite.Count > 0)
            throw new NonFiniteResultException($"{what}; written to {path} anyway (non-finite values allowed).", written: true);
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
        long[] shape = ActivationShape(path, name, hidden, mustMatchShape);
        using SafetensorsFile file = SafetensorsFile.Open(path);
        return (file.ReadFloat32(name, shape), shape);
    }

    /// <summary>The shape of a [T,H] or [B,S,H] floating tensor, from the header only (nothing read or allocated).</summary>
    public static long[] ActivationShape(string path, string name, int hidden, long[]? mustMatchShape)
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
        if (info.DType is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16))
            throw new SafetensorsFormatException($"{path}: tensor '{name}' has dtype {info.DTypeName}; expected F32, F16 or BF16.");
        return info.Shape;
    }
}
