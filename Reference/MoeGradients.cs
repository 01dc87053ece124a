namespace MoeNative.Reference;

/// <summary>
/// The five gradients of a scalar loss with respect to the block's inputs and parameters, given dY = ∂loss/∂Y,
/// as storage-dtype values in float arrays. Overwritten (not accumulated) by every backward.
/// </summary>
public sealed class MoeGradients
{
    public MoeConfig Config { get; }
    /// <summary>dX (<c>grad_hidden_states</c>). // [T,H]</summary>
    public float[] X { get; }
    /// <summary>d router weight (<c>gate.weight</c>). // [E,H]</summary>
    public float[] Router { get; }
    /// <summary>d gate_up_proj, gate rows 0..I-1 then up rows I..2I-1 per expert. // [E,2I,H]</summary>
    public float[] GateUp { get; }
    /// <summary>d down_proj. // [E,H,I]</summary>
    public float[] DownProj { get; }

    private float[]? _gateProj, _upProj;

    public MoeGradients(MoeConfig config, float[] x /*[T,H]*/, float[] router /*[E,H]*/, float[] gateUp /*[E,2I,H]*/, float[] downProj /*[E,H,I]*/)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(x);
        if (x.Length % config.HiddenSize != 0) throw new ArgumentException($"x must be [T,H={config.HiddenSize}], got {x.Length} elements.", nameof(x));
        config.CheckWeightShapes(router, gateUp, downProj, nameof(router), nameof(gateUp), nameof(downProj));
        Config = config;
        X = x;
        Router = router;
        GateUp = gateUp;
        DownProj = downProj;
    }

    /// <summary>d gate_proj, split out of <see cref="GateUp"/> (copied once, then cached). // [E,I,H]</summary>
    public float[] GateProj => _gateProj ??= Split(0);
    /// <summary>d up_proj, split out of <see cref="GateUp"/> (copied once, then cached). // [E,I,H]</summary>
    public float[] UpProj => _upProj ??= Split(1);

    private float[] Split(int half)
    {
        int ih = Config.IntermediateSize * Config.HiddenSize;
        var result = new float[(long)Config.NumExperts * ih];
        for (int e = 0; e < Config.NumExperts; e++)
            GateUp.AsSpan((int)((2L * e + half) * ih), ih).CopyTo(result.AsSpan(e * ih, ih));
        return result;
    }
}
