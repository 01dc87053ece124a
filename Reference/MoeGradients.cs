namespace MoeNative.Reference;

/// <summary>
/// The five gradients of a scalar loss with respect to the block's inputs and parameters, given dY = ∂loss/∂Y,
/// as storage-dtype values in float arrays. Overwritten (not accumulated) by every backward.
/// </summary>
public sealed class MoeGradients
{
    public MoeConfig Config { get; }
    /// <summary>dX (<c>grad_hidden_states</c>). // [T,H]</summary>
    public float[] HiddenStates { get; }
    /// <summary>d router weight (<c>gate.weight</c>). // [E,H]</summary>
    public float[] Gate { get; }
    /// <summary>d gate_up_proj, gate rows 0..I-1 then up rows I..2I-1 per expert. // [E,2I,H]</summary>
    public float[] GateUpProj { get; }
    /// <summary>d down_proj. // [E,H,I]</summary>
    public float[] DownProj { get; }

    private float[]? _gateProj, _upProj;

    public MoeGradients(MoeConfig config, float[] hiddenStates /*[T,H]*/, float[] gate /*[E,H]*/, float[] gateUpProj /*[E,2I,H]*/, float[] downProj /*[E,H,I]*/)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(hiddenStates);
        if (hiddenStates.Length % config.HiddenSize != 0) throw new ArgumentException($"hiddenStates must be [T,H={config.HiddenSize}], got {hiddenStates.Length} elements.", nameof(hiddenStates));
        config.CheckWeightShapes(gate, gateUpProj, downProj, nameof(gate), nameof(gateUpProj), nameof(downProj));
        Config = config;
        HiddenStates = hiddenStates;
        Gate = gate;
        GateUpProj = gateUpProj;
        DownProj = downProj;
    }

    /// <summary>d gate_proj, split out of <see cref="GateUpProj"/> (copied once, then cached). // [E,I,H]</summary>
    public float[] GateProj => _gateProj ??= Split(0);
    /// <summary>d up_proj, split out of <see cref="GateUpProj"/> (copied once, then cached). // [E,I,H]</summary>
    public float[] UpProj => _upProj ??= Split(1);

    /// <summary>d gate_proj (<paramref name="up"/> false) or d up_proj (true) as E views into <see cref="GateUpProj"/>,
    /// one [I,H] block per expert in expert order: what <see cref="GateProj"/> / <see cref="UpProj"/> hold, without
    /// their copies (a Qwen2-57B-sized layer's halves are 2.35 GB each as floats).</summary>
    public IReadOnlyList<ReadOnlyMemory<float>> ProjectionBlocks(bool up)
    {
        int ih = Config.IntermediateSize * Config.HiddenSize;
        var blocks = new ReadOnlyMemory<float>[Config.NumExperts];
        for (int e = 0; e < blocks.Length; e++)
            blocks[e] = GateUpProj.AsMemory((int)((2L * e + (up ? 1 : 0)) * ih), ih);
        return blocks;
    }

    private float[] Split(int half)
    {
        int ih = Config.IntermediateSize * Config.HiddenSize;
        var result = new float[(long)Config.NumExperts * ih];
        for (int e = 0; e < Config.NumExperts; e++)
            GateUpProj.AsSpan((int)((2L * e + half) * ih), ih).CopyTo(result.AsSpan((int)((long)e * ih), ih));
        return result;
    }
}
