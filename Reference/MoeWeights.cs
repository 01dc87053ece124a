using MoeNative.Interop;

namespace MoeNative.Reference;

/// <summary>
/// The parameters of one expert layer as host float arrays (row-major), laid out like Hugging Face's fused
/// <c>Qwen3MoeExperts</c>: router <c>gate.weight</c>, <c>experts.gate_up_proj</c> (per expert gate_proj rows 0..I-1
/// then up_proj rows I..2I-1), <c>experts.down_proj</c>. Values are whatever the caller stored; the references round a
/// copy to their storage dtype when they are not representable in it.
/// </summary>
public sealed class MoeWeights
{
    public MoeConfig Config { get; }
    /// <summary>Router weight <c>gate.weight</c>. // [E,H]</summary>
    public float[] Gate { get; }
    /// <summary>Stacked gate/up projections. // [E,2I,H]</summary>
    public float[] GateUpProj { get; }
    /// <summary>Down projections. // [E,H,I]</summary>
    public float[] DownProj { get; }

    /// <exception cref="ArgumentException">An array's length is not the one its shape needs (the message names it).</exception>
    public MoeWeights(MoeConfig config, float[] gate /*[E,H]*/, float[] gateUpProj /*[E,2I,H]*/, float[] downProj /*[E,H,I]*/)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        config.CheckWeightShapes(gate, gateUpProj, downProj, nameof(gate), nameof(gateUpProj), nameof(downProj));
        Config = config;
        Gate = gate;
        GateUpProj = gateUpProj;
        DownProj = downProj;
    }

    /// <summary>
    /// Random weights with a scale that keeps activations O(1) for unit-variance inputs: every matrix N(0, 1/fan_in)
    /// (router and gate_up: fan_in = H; down: fan_in = I), rounded to <paramref name="roundTo"/>. Deterministic in
    /// (<paramref name="seed"/>, config). NOTE: HF initialises with std 0.02, which makes the tiny test configs'
    /// outputs so small that every tolerance passes; 1/√fan_in keeps the tests sharp at every size.
    /// </summary>
    public static MoeWeights Random(MoeConfig config, int seed, ScalarType roundTo = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        float hs = 1f / MathF.Sqrt(config.HiddenSize), isd = 1f / MathF.Sqrt(config.IntermediateSize);
        return new MoeWeights(config,
            TensorRandom.Normal(config.GateElements, unchecked(seed * 3 + 0), hs, roundTo),
            TensorRandom.Normal(config.GateUpProjElements, unchecked(seed * 3 + 1), hs, roundTo),
            TensorRandom.Normal(config.DownProjElements, unchecked(seed * 3 + 2), isd, roundTo))
        { KnownDType = roundTo };
    }

    /// <summary>A storage dtype every value is known to be representable in (set by <see cref="Random"/>,
    /// <see cref="RoundedTo"/> and the checkpoint loader), or null when unknown.</summary>
    public ScalarType? KnownDType { get; init; }

    /// <summary>This object if every value is representable in <paramref name="dtype"/>, else a rounded copy.</summary>
    public MoeWeights RoundedTo(ScalarType dtype)
    {
        if (dtype == ScalarType.Float32 || KnownDType == dtype) return this;
        float[] r = StoragePrecision.RoundedCopy(Gate, dtype);
        float[] gu = StoragePrecision.RoundedCopy(GateUpProj, dtype);
        float[] d = StoragePrecision.RoundedCopy(DownProj, dtype);
        return ReferenceEquals(r, Gate) && ReferenceEquals(gu, GateUpProj) && ReferenceEquals(d, DownProj)
            ? this
            : new MoeWeights(Config, r, gu, d) { KnownDType = dtype };
    }

    // ---- per-expert views -----------------------------------------------------------------------------------------

    /// <summary>Expert e's stacked [gate; up] rows. // [2I,H]</summary>
    public ReadOnlySpan<float> GateUpProjOf(int expert) => GateUpProj.AsSpan(ExpertOffset(expert, 2L * Config.IntermediateSize * Config.HiddenSize),
        2 * Config.IntermediateSize * Config.HiddenSize);

    /// <summary>Expert e's gate_proj.weight. // [I,H]</summary>
    public ReadOnlySpan<float> GateProjOf(int expert) => GateUpProjOf(expert)[..(Config.IntermediateSize * Config.HiddenSize)];

    /// <summary>Expert e's up_proj.weight. // [I,H]</summary>
    public ReadOnlySpan<float> UpProjOf(int expert) => GateUpProjOf(expert)[(Config.IntermediateSize * Config.HiddenSize)..];

    /// <summary>Expert e's down_proj.weight. // [H,I]</summary>
    public ReadOnlySpan<float> DownProjOf(int expert) => DownProj.AsSpan(ExpertOffset(expert, (long)Config.HiddenSize * Config.IntermediateSize),
        Config.HiddenSize * Config.IntermediateSize);

    private int ExpertOffset(int expert, long perExpert)
    {
        if ((uint)expert >= (uint)Config.NumExperts)
            throw new ArgumentOutOfRangeException(nameof(expert), expert, $"Expert id must be in [0, {Config.NumExperts}).");
        return checked((int)(expert * perExpert));
    }

    /// <summary>Builds the fused layout from per-expert gate/up/down arrays (HF's older per-expert <c>Qwen3MoeMLP</c> layout).</summary>
    public static MoeWeights FromPerExpert(MoeConfig config, float[] router /*[E,H]*/,
        IReadOnlyList<float[]> gateProj /*E x [I,H]*/, IReadOnlyList<float[]> upProj /*E x [I,H]*/, IReadOnlyList<float[]> downProj /*E x [H,I]*/)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        int e = config.NumExperts, h = config.HiddenSize, i = config.IntermediateSize, ih = i * h;
        if (gateProj.Count != e || upProj.Count != e || downProj.Count != e)
            throw new ArgumentException($"Expected {e} per-expert gate/up/down arrays, got {gateProj.Count}/{upProj.Count}/{downProj.Count}.");
        var gateUp = new float[config.GateUpProjElements];
        var down = new float[config.DownProjElements];
        for (int x = 0; x < e; x++)
        {
            if (gateProj[x].Length != ih) throw new ArgumentException($"gate_proj of expert {x} must be [I={i},H={h}], got {gateProj[x].Length} elements.", nameof(gateProj));
            if (upProj[x].Length != ih) throw new ArgumentException($"up_proj of expert {x} must be [I={i},H={h}], got {upProj[x].Length} elements.", nameof(upProj));
            if (downProj[x].Length != ih) throw new ArgumentException($"down_proj of expert {x} must be [H={h},I={i}], got {downProj[x].Length} elements.", nameof(downProj));
            gateProj[x].CopyTo(gateUp, (long)x * 2 * ih);
            upProj[x].CopyTo(gateUp, (long)x * 2 * ih + ih);
            downProj[x].CopyTo(down, (long)x * ih);
        }
        return new MoeWeights(config, router, gateUp, down);
    }
}
