using MoeNative.Interop;

namespace MoeNative.Reference;

/// <summary>Qwen3-MoE routing (the one implementation every block follows): logits, fp32 softmax, top-k (descending,
/// ties → lower expert id), optional renormalisation, cast to the storage dtype.</summary>
public static class MoeRouter
{
    /// <summary>L = X·Wrᵀ rounded to dtype. x // [T,H] (storage values); returns // [T,E]</summary>
    public static float[] Logits(float[] x, MoeWeights weights, ScalarType dtype, IGemmBackend? gemm = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weights);
        int h = weights.Config.HiddenSize;
        if (x.Length % h != 0) throw new ArgumentException($"x must be [T,H={h}], got {x.Length} elements.", nameof(x));
        return MoeCore<float>.RouterLogits(gemm ?? HostGemm.Instance, x, weights.Gate, x.Length / h, h, weights.Config.NumExperts, dtype);
    }

    /// <summary>Routing from logits. logits // [T,E]; probs (out) // [T,E] fp32.</summary>
    public static MoeRouting Route(float[] logits, MoeConfig config, ScalarType dtype, out float[] probs)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(config);
        int e = config.NumExperts, k = config.TopK;
        if (logits.Length % e != 0) throw new ArgumentException($"logits must be [T,E={e}], got {logits.Length} elements.", nameof(logits));
        int tokens = logits.Length / e;
        probs = new float[logits.Length];
        MoeCore<float>.Softmax(logits, probs, tokens, e);
        var selected = new int[tokens * k];
        MoeCore<float>.TopK(probs, selected, tokens, e, k);
        var weights = new float[tokens * k];
        MoeCore<float>.RoutingWeights(probs, selected, weights, tokens, e, k, config.NormTopKProb, dtype);
        return new MoeRouting(tokens, k, selected, weights);
    }

    /// <summary>Router backward: dLogits // [T,E] (storage dtype) from probs // [T,E], selected // [T,k],
    /// dWeights // [T,k] = ∂loss/∂w. Selection held fixed.</summary>
    public static float[] Backward(float[] probs, int[] selected, float[] dWeights, MoeConfig config, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(probs);
        ArgumentNullException.ThrowIfNull(selected);
        ArgumentNullException.ThrowIfNull(dWeights);
        ArgumentNullException.ThrowIfNull(config);
        int e = config.NumExperts, k = config.TopK;
        if (probs.Length % e != 0) throw new ArgumentException($"probs must be [T,E={e}], got {probs.Length} elements.", nameof(probs));
        int tokens = probs.Length / e;
        if (selected.Length != tokens * k) throw new ArgumentException($"selected must be [T={tokens},k={k}], got {selected.Length}.", nameof(selected));
        if (dWeights.Length != tokens * k) throw new ArgumentException($"dWeights must be [T={tokens},k={k}], got {dWeights.Length}.", nameof(dWeights));
        RoutingIndices.CheckSelected(selected, tokens, k, e, nameof(selected));
        var dL = new float[tokens * e];
        MoeCore<float>.RouterBackward(probs, selected, dWeights, dL, tokens, e, k, config.NormTopKProb, dtype);
        return dL;
    }
}
