namespace MoeNative.Reference;

/// <summary>
/// The scale against which two implementations' router gradients (<c>gate.weight</c>, dWr [E,H]) are judged.
/// NOTE: dWr = dLᵀX with dL = P ⊙ (dP − Σ P·dP) and dP from dv = (dw − Σ_i w_i·dw_i)/S: differences of dot products
/// dw = ⟨dY, U⟩ that are each about √H in size. Two implementations whose expert outputs U differ by legitimate
/// rounding (HF rounds silu(gate) in the storage dtype before the product with up; the grouped and fused forms do not)
/// get dw's that differ by a few ulps of |dw|, and when the k dw's of a token nearly cancel, dWr itself is small while
/// that difference is not: at T=1 (dWr = dL ⊗ x, no averaging over tokens) the magnitude-scaled rule then fails on
/// rounding alone (HF vs grouped, Qwen3 H/E/k, fp16, T=1: 3 of 60 input seeds on the CPU; the H200 failure of
/// HfReference_Vs_GroupedCublas(qwen3-30b-a3b, fp16, T=1)). The first-order bound of that propagation is the scale:
/// with |δdw_tj| ≤ ρ·D_t, D_t = max_j |dw_tj|: |δdv_j| ≤ 2ρD_t/S_t (ρD_t without renormalisation), |δdL_te| ≤
/// P_te·|δdv|max·(1[e ∈ sel_t] + S_t), and |δdWr_eh| ≤ Σ_t |δdL_te|·|x_th|. <see cref="Compute"/> returns that bound
/// for ρ = 1; <see cref="TensorComparison.ScaledWithFloor"/> with tol then allows ρ = tol.
/// </summary>
public static class RouterGradientScale
{
    /// <summary>Scale [E,H] of the router gradient from the expected side's forward and dY.</summary>
    /// <param name="reference">The expected implementation's forward (router probabilities, routing, unpermuted expert
    /// outputs U [T*k,H] in slot order, the rounded input).</param>
    /// <param name="dY">grad_output. // [T,H]</param>
    public static float[] Compute(MoeIntermediates reference, ReadOnlySpan<float> dY)
    {
        ArgumentNullException.ThrowIfNull(reference);
        MoeConfig c = reference.Config;
        int tokens = reference.Tokens, e = c.NumExperts, k = c.TopK, h = c.HiddenSize;
        if (dY.Length != (long)tokens * h)
            throw new ArgumentException($"dY must be [T={tokens},H={h}], got {dY.Length} elements.", nameof(dY));
        var g = new double[(long)tokens * e];   // [T,E] first-order sensitivity of dL to a unit relative dw error
        for (int t = 0; t < tokens; t++)
        {
            ReadOnlySpan<float> dyt = dY.Slice(t * h, h);
            double d = 0, s = 0;
            for (int j = 0; j < k; j++)
            {
                int p = t * k + j;
                ReadOnlySpan<float> u = reference.Unpermuted.AsSpan(p * h, h);
                double dot = 0;
                for (int col = 0; col < h; col++) dot += (double)dyt[col] * u[col];
                d = Math.Max(d, Math.Abs(dot));
                s += reference.RouterProbs[t * e + reference.Routing.Selected[p]];
            }
            double dv = c.NormTopKProb ? 2 * d / s : d;
            for (int x = 0; x < e; x++) g[(long)t * e + x] = reference.RouterProbs[t * e + x] * dv * s;
            for (int j = 0; j < k; j++)
            {
                int x = reference.Routing.Selected[t * k + j];
                g[(long)t * e + x] += reference.RouterProbs[t * e + x] * dv;
            }
        }
        var scale = new float[(long)e * h];
        Parallel.For(0, e, x =>
        {
            Span<float> row = scale.AsSpan(x * h, h);
            for (int t = 0; t < tokens; t++)
            {
                double gt = g[(long)t * e + x];
                if (gt == 0) continue;
                ReadOnlySpan<float> xt = reference.Input.AsSpan(t * h, h);
                for (int col = 0; col < h; col++) row[col] += (float)(gt * Math.Abs(xt[col]));
            }
        });
        return scale;
    }
}
