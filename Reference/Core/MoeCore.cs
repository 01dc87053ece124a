using System.Numerics;
using MoeNative.Interop;

namespace MoeNative.Reference;

// Dimension legend: T tokens, H hidden, I intermediate (per expert), E experts, k experts per token.
// Slot p = t*k + j (token order); row r = expert-ordered position (RoutingIndices). All tensors row-major.
// T is the compute type: float (fp32 accumulation, the reference proper) or double (float64 finite-difference checks).
// Every formula of docs/DESIGN.md's forward and backward is implemented exactly once, in this file.
// NOTE: sizes are allocated from 64-bit products. Span offsets stay int: the entry points check T against
// MoeLimits.MaxReferenceTokens and MoeConfig.Validate bounds [E,2I,H], so every array here has at most
// Array.MaxLength elements and every offset into it (a prefix of its length) fits an int.

/// <summary>Layer parameters in compute type <typeparamref name="T"/>.</summary>
internal sealed record MoeParams<T>(MoeConfig Config, T[] Router /*[E,H]*/, T[] GateUp /*[E,2I,H]*/, T[] Down /*[E,H,I]*/)
    where T : unmanaged, IBinaryFloatingPointIeee754<T>;

/// <summary>Saved forward state in compute type <typeparamref name="T"/> (mirrors <see cref="MoeIntermediates"/>).</summary>
internal sealed class MoeState<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    public required MoeConfig Config;
    public required ScalarType DType;
    public required int Tokens;
    public required T[] X;            // [T,H]
    public required T[] Logits;       // [T,E]
    public required T[] Probs;        // [T,E]
    public required int[] Selected;   // [T,k]
    public required T[] Weights;      // [T,k]
    public required RoutingIndices Indices;
    public required T[] G1;           // [T*k,2I] expert order
    public required T[] A;            // [T*k,I]  expert order
    public required T[] G2;           // [T*k,H]  expert order
    public required T[] U;            // [T*k,H]  slot order
    public required T[] Y;            // [T,H]
}

/// <summary>The five gradients in compute type <typeparamref name="T"/>.</summary>
internal sealed record MoeGrads<T>(T[] X /*[T,H]*/, T[] Router /*[E,H]*/, T[] GateUp /*[E,2I,H]*/, T[] Down /*[E,H,I]*/)
    where T : unmanaged, IBinaryFloatingPointIeee754<T>;

/// <summary>Which forward structure (and so which rounding points) to run.</summary>
internal enum MoeForwardKind
{
    /// <summary>HF per-expert loop: rounds act_fn(gate), the product with up, the product with the routing weight,
    /// and each index_add_ into the storage-dtype output (experts in increasing id).</summary>
    HfLoop,
    /// <summary>Grouped: silu-and-mul rounded once; top-k weighted sum accumulated in the compute type, rounded once.</summary>
    Grouped,
}

internal static class MoeCore<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    private static T Round(T v, ScalarType dt) => Precision<T>.Round(v, dt);

    // ==== Router ====================================================================================================

    /// <summary>L = X·Wrᵀ rounded to dt (HF's <c>Linear</c> returns the storage dtype).</summary>
    public static T[] RouterLogits(IGemm<T> gemm, ReadOnlySpan<T> x /*[T,H]*/, ReadOnlySpan<T> router /*[E,H]*/, int tokens, int h, int e, ScalarType dt)
    {
        var logits = new T[(long)tokens * e];
        gemm.MatMulNT(x, router, logits, tokens, e, h, dt);
        return logits;
    }

    /// <summary>P = softmax(L) per token, in the compute type (fp32 for float, like HF's <c>softmax(dtype=float)</c>).</summary>
    public static void Softmax(ReadOnlySpan<T> logits /*[T,E]*/, Span<T> probs /*[T,E]*/, int tokens, int e)
    {
        for (int t = 0; t < tokens; t++)
        {
            ReadOnlySpan<T> l = logits.Slice(t * e, e);
            Span<T> p = probs.Slice(t * e, e);
            T max = T.NegativeInfinity;
            foreach (T v in l) max = T.Max(max, v);
            T sum = T.Zero;
            for (int i = 0; i < e; i++) { p[i] = T.Exp(l[i] - max); sum += p[i]; }
            for (int i = 0; i < e; i++) p[i] /= sum;
        }
    }

    /// <summary>Top-k of each row of P: descending value, ties → lower expert id (scan in increasing id, replace
    /// only on strictly greater).</summary>
    public static void TopK(ReadOnlySpan<T> probs /*[T,E]*/, Span<int> selected /*[T,k]*/, int tokens, int e, int k)
    {
        Span<bool> taken = e <= 1024 ? stackalloc bool[e] : new bool[e];
        for (int t = 0; t < tokens; t++)
        {
            taken.Clear();
            ReadOnlySpan<T> p = probs.Slice(t * e, e);
            for (int j = 0; j < k; j++)
            {
                int best = -1;
                for (int i = 0; i < e; i++)
                    if (!taken[i] && (best < 0 || p[i] > p[best] || (T.IsNaN(p[i]) && !T.IsNaN(p[best])))) best = i;
                taken[best] = true;
                selected[t * k + j] = best;
            }
        }
    }

    /// <summary>w[t,j] = dt(norm ? v_j / Σ_i v_i : v_j), v_j = P[t, sel[t,j]]; sum in slot order, compute type.</summary>
    public static void RoutingWeights(ReadOnlySpan<T> probs /*[T,E]*/, ReadOnlySpan<int> selected /*[T,k]*/, Span<T> weights /*[T,k]*/,
        int tokens, int e, int k, bool normTopK, ScalarType dt)
    {
        for (int t = 0; t < tokens; t++)
        {
            T sum = T.Zero;
            for (int j = 0; j < k; j++) sum += probs[t * e + selected[t * k + j]];
            for (int j = 0; j < k; j++)
            {
                T v = probs[t * e + selected[t * k + j]];
                weights[t * k + j] = Round(normTopK ? v / sum : v, dt);
            }
        }
    }

    /// <summary>
    /// Router backward, given dw [T,k] = ∂loss/∂w (w the storage-dtype routing weights):
    /// S = Σ_j v_j; dv_j = norm ? (dw_j − Σ_i dw_i·(v_i/S)) / S : dw_j; dP[sel_j] = dv_j (0 elsewhere);
    /// dL = P ⊙ (dP − Σ_e P_e·dP_e), rounded to dt (the gradient of the storage-dtype logits). Overwrites dLogits.
    /// The selection is held fixed (top-k is piecewise constant); v is recomputed from P in the compute type.
    /// </summary>
    public static void RouterBackward(ReadOnlySpan<T> probs /*[T,E]*/, ReadOnlySpan<int> selected /*[T,k]*/, ReadOnlySpan<T> dWeights /*[T,k]*/,
        Span<T> dLogits /*[T,E]*/, int tokens, int e, int k, bool normTopK, ScalarType dt)
    {
        Span<T> dP = e <= 1024 ? stackalloc T[e] : new T[e];
        for (int t = 0; t < tokens; t++)
        {
            ReadOnlySpan<T> p = probs.Slice(t * e, e);
            T sum = T.Zero;
            for (int j = 0; j < k; j++) sum += p[selected[t * k + j]];
            T dot = T.Zero; // Σ_i dw_i·w_i
            if (normTopK)
                for (int j = 0; j < k; j++) dot += dWeights[t * k + j] * (p[selected[t * k + j]] / sum);
            dP.Clear();
            for (int j = 0; j < k; j++)
                dP[selected[t * k + j]] += normTopK ? (dWeights[t * k + j] - dot) / sum : dWeights[t * k + j];
            T pdp = T.Zero;
            for (int i = 0; i < e; i++) pdp += p[i] * dP[i];
            for (int i = 0; i < e; i++) dLogits[t * e + i] = Round(p[i] * (dP[i] - pdp), dt);
        }
    }

    /// <summary>Logits → probabilities → (selection unless forced) → weights (unless forced).</summary>
    public static (T[] Logits, T[] Probs, int[] Selected, T[] Weights) Route(IGemm<T> gemm, MoeParams<T> prm, ReadOnlySpan<T> x /*[T,H]*/, int tokens,
        ScalarType dt, int[]? forcedSelected, T[]? forcedWeights)
    {
        MoeConfig c = prm.Config;
        int e = c.NumExperts, k = c.TopK;
        T[] logits = RouterLogits(gemm, x, prm.Router, tokens, c.HiddenSize, e, dt);
        var probs = new T[(long)tokens * e];
        Softmax(logits, probs, tokens, e);
        int[] selected = forcedSelected ?? new int[(long)tokens * k];
        if (forcedSelected is null) TopK(probs, selected, tokens, e, k);
        T[] weights = forcedWeights ?? new T[(long)tokens * k];
        if (forcedWeights is null) RoutingWeights(probs, selected, weights, tokens, e, k, c.NormTopKProb, dt);
        return (logits, probs, selected, weights);
    }

    // ==== Expert MLP pieces =========================================================================================

    /// <summary>σ(g) in the compute type.</summary>
    private static T Sigmoid(T g) => T.One / (T.One + T.Exp(-g));

    /// <summary>
    /// A[r] = silu(G1[r,:I]) ⊙ G1[r,I:], silu(g) = g·σ(g). <paramref name="roundActivation"/> (HF: <c>act_fn(gate)</c>
    /// is a storage-dtype tensor) rounds silu(g) before the product; the product is always rounded.
    /// </summary>
    public static void SiluMulForward(ReadOnlySpan<T> g1 /*[R,2I]*/, Span<T> a /*[R,I]*/, int rows, int inter, ScalarType dt, bool roundActivation)
    {
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<T> gate = g1.Slice(r * 2 * inter, inter), up = g1.Slice(r * 2 * inter + inter, inter);
            Span<T> ar = a.Slice(r * inter, inter);
            for (int i = 0; i < inter; i++)
            {
                T act = gate[i] * Sigmoid(gate[i]);
                if (roundActivation) act = Round(act, dt);
                ar[i] = Round(act * up[i], dt);
            }
        }
    }

    /// <summary>
    /// With g = G1[r,:I], u = G1[r,I:], s = σ(g): dg = dA⊙u⊙s⊙(1 + g(1−s)), du = dA⊙g⊙s; dG1 = [dg, du], rounded to dt.
    /// Overwrites dG1.
    /// </summary>
    public static void SiluMulBackward(ReadOnlySpan<T> g1 /*[R,2I]*/, ReadOnlySpan<T> dA /*[R,I]*/, Span<T> dG1 /*[R,2I]*/, int rows, int inter, ScalarType dt)
    {
        for (int r = 0; r < rows; r++)
        {
            int o = r * 2 * inter;
            for (int i = 0; i < inter; i++)
            {
                T g = g1[o + i], u = g1[o + inter + i], d = dA[r * inter + i], s = Sigmoid(g);
                dG1[o + i] = Round(d * u * s * (T.One + g * (T.One - s)), dt);
                dG1[o + inter + i] = Round(d * g * s, dt);
            }
        }
    }

    /// <summary>Xp[r] = X[gather[r] / k] (permute). Overwrites xp.</summary>
    public static void PermuteRows(ReadOnlySpan<T> x /*[T,H]*/, ReadOnlySpan<int> gather /*[T*k]*/, Span<T> xp /*[T*k,H]*/, int k, int h)
    {
        for (int r = 0; r < gather.Length; r++) x.Slice(gather[r] / k * h, h).CopyTo(xp.Slice(r * h, h));
    }

    /// <summary>Per expert e with rows [r0,r1): C[r0:r1] = A[r0:r1]·W[e]ᵀ (W[e] is [N,K]), rounded to dt.</summary>
    public static void ExpertsNT(IGemm<T> gemm, RoutingIndices idx, ReadOnlySpan<T> a /*[T*k,K]*/, ReadOnlySpan<T> w /*[E,N,K]*/,
        Span<T> c /*[T*k,N]*/, int n, int kk, ScalarType dt)
    {
        for (int e = 0; e < idx.NumExperts; e++)
        {
            int r0 = idx.ExpertOffsets[e], cnt = idx.TokenCounts[e];
            if (cnt == 0) continue;
            gemm.MatMulNT(a.Slice(r0 * kk, cnt * kk), w.Slice(checked((int)((long)e * n * kk)), n * kk), c.Slice(r0 * n, cnt * n), cnt, n, kk, dt);
        }
    }

    // ==== Forward ===================================================================================================

    public static MoeState<T> Forward(MoeForwardKind kind, IGemm<T> gemm, MoeParams<T> prm, T[] x /*[T,H], storage values*/, int tokens,
        ScalarType dt, int[]? forcedSelected = null, T[]? forcedWeights = null)
    {
        MoeConfig c = prm.Config;
        int h = c.HiddenSize, inter = c.IntermediateSize, k = c.TopK, tk = tokens * k;
        var (logits, probs, selected, weights) = Route(gemm, prm, x, tokens, dt, forcedSelected, forcedWeights);
        RoutingIndices idx = RoutingIndices.FromSelected(selected, k, c.NumExperts);
        var g1 = new T[(long)tk * 2 * inter];
        var a = new T[(long)tk * inter];
        var g2 = new T[(long)tk * h];
        var u = new T[(long)tk * h];
        var y = new T[(long)tokens * h];

        if (kind == MoeForwardKind.HfLoop)
        {
            // HF: for each hit expert in increasing id: gather its tokens, gate_up Linear, act_fn(gate) * up, down
            // Linear, * routing weight, index_add_ into the storage-dtype output. Every op's result is a
            // storage-dtype tensor, so each is rounded here. Row order within an expert does not change any value
            // (each token meets an expert at most once), so rows are kept in the shared stable order.
            var cur = new T[(long)(tk == 0 ? 0 : idx.TokenCounts.Max()) * h];
            for (int e = 0; e < c.NumExperts; e++)
            {
                int r0 = idx.ExpertOffsets[e], cnt = idx.TokenCounts[e];
                if (cnt == 0) continue;
                for (int i = 0; i < cnt; i++) x.AsSpan(idx.Gather[r0 + i] / k * h, h).CopyTo(cur.AsSpan(i * h, h));
                Span<T> g1e = g1.AsSpan(r0 * 2 * inter, cnt * 2 * inter), ae = a.AsSpan(r0 * inter, cnt * inter), g2e = g2.AsSpan(r0 * h, cnt * h);
                gemm.MatMulNT(cur.AsSpan(0, cnt * h), prm.GateUp.AsSpan(checked((int)((long)e * 2 * inter * h)), 2 * inter * h), g1e, cnt, 2 * inter, h, dt);
                SiluMulForward(g1e, ae, cnt, inter, dt, roundActivation: true);
                gemm.MatMulNT(ae, prm.Down.AsSpan(checked((int)((long)e * h * inter)), h * inter), g2e, cnt, h, inter, dt);
                for (int i = 0; i < cnt; i++)
                {
                    int p = idx.Gather[r0 + i], t = p / k;
                    T wv = weights[p];
                    Span<T> yt = y.AsSpan(t * h, h);
                    ReadOnlySpan<T> row = g2e.Slice(i * h, h);
                    for (int col = 0; col < h; col++) yt[col] = Round(yt[col] + Round(row[col] * wv, dt), dt);
                }
            }
            for (int r = 0; r < tk; r++) g2.AsSpan(r * h, h).CopyTo(u.AsSpan(idx.Gather[r] * h, h));
        }
        else
        {
            // Grouped: permute, grouped GEMM, silu-and-mul, grouped GEMM, unpermute, top-k weighted sum.
            var xp = new T[(long)tk * h];
            PermuteRows(x, idx.Gather, xp, k, h);
            ExpertsNT(gemm, idx, xp, prm.GateUp, g1, 2 * inter, h, dt);
            SiluMulForward(g1, a, tk, inter, dt, roundActivation: false);
            ExpertsNT(gemm, idx, a, prm.Down, g2, h, inter, dt);
            for (int r = 0; r < tk; r++) g2.AsSpan(r * h, h).CopyTo(u.AsSpan(idx.Gather[r] * h, h));
            CombineForward(u, weights, y, tokens, k, h, dt);
        }

        return new MoeState<T>
        {
            Config = c, DType = dt, Tokens = tokens, X = x, Logits = logits, Probs = probs, Selected = selected, Weights = weights,
            Indices = idx, G1 = g1, A = a, G2 = g2, U = u, Y = y,
        };
    }

    /// <summary>Y[t] = dt(Σ_j w[t,j]·U[t*k+j]), j ascending, compute-type accumulation. Overwrites y.</summary>
    public static void CombineForward(ReadOnlySpan<T> u /*[T*k,H]*/, ReadOnlySpan<T> w /*[T,k]*/, Span<T> y /*[T,H]*/, int tokens, int k, int h, ScalarType dt)
    {
        for (int t = 0; t < tokens; t++)
            for (int col = 0; col < h; col++)
            {
                T acc = T.Zero;
                for (int j = 0; j < k; j++) acc += w[t * k + j] * u[(t * k + j) * h + col];
                y[t * h + col] = Round(acc, dt);
            }
    }

    // ==== Backward ==================================================================================================

    /// <summary>
    /// Manual backward of either forward (same math; the saved activations carry each forward's rounding), given
    /// dY [T,H]. Math in the compute type on the saved storage-dtype activations; each gradient tensor is rounded
    /// to dt where it is materialised (dU, dA, dG1, dXp, dL, the weight gradients), dX rounded once after all sums.
    /// The one difference between the kinds: HF's dw (the gradient of the storage-dtype routing-weight tensor) is a
    /// storage-dtype tensor, the grouped form keeps dw in fp32 (as the fused top-k combine backward does).
    /// </summary>
    public static MoeGrads<T> Backward(MoeForwardKind kind, IGemm<T> gemm, MoeParams<T> prm, MoeState<T> s, ReadOnlySpan<T> dY /*[T,H]*/)
    {
        MoeConfig c = prm.Config;
        int tokens = s.Tokens, h = c.HiddenSize, inter = c.IntermediateSize, e = c.NumExperts, k = c.TopK, tk = tokens * k;
        ScalarType dt = s.DType;
        RoutingIndices idx = s.Indices;

        // Top-k combine: dU[p] = w[p]·dY[t] (stored directly in expert order: dG2[r] = dU[gather[r]]);
        //                dw[p] = <dY[t], U[p]>.
        var dG2 = new T[(long)tk * h];
        var dw = new T[tk];
        for (int r = 0; r < tk; r++)
        {
            int p = idx.Gather[r], t = p / k;
            ReadOnlySpan<T> dyt = dY.Slice(t * h, h), up = s.U.AsSpan(p * h, h);
            Span<T> d = dG2.AsSpan(r * h, h);
            T wv = s.Weights[p], dot = T.Zero;
            for (int col = 0; col < h; col++) { d[col] = Round(wv * dyt[col], dt); dot += dyt[col] * up[col]; }
            dw[p] = kind == MoeForwardKind.HfLoop ? Round(dot, dt) : dot;
        }

        // Second GEMM: dWd[e] = Σ_{r∈e} dG2[r]ᵀ A[r]  ([H,I]);  dA[r] = dG2[r]·Wd[e]  ([I]).
        var dDown = new T[(long)e * h * inter];
        var dA = new T[(long)tk * inter];
        for (int x = 0; x < e; x++)
        {
            int r0 = idx.ExpertOffsets[x], cnt = idx.TokenCounts[x];
            if (cnt == 0) continue;
            ReadOnlySpan<T> dG2e = dG2.AsSpan(r0 * h, cnt * h);
            gemm.MatMulTN(dG2e, s.A.AsSpan(r0 * inter, cnt * inter), dDown.AsSpan(x * h * inter, h * inter), h, inter, cnt, dt);
            gemm.MatMulNN(dG2e, prm.Down.AsSpan(x * h * inter, h * inter), dA.AsSpan(r0 * inter, cnt * inter), cnt, inter, h, dt);
        }

        // silu-and-mul.
        var dG1 = new T[(long)tk * 2 * inter];
        SiluMulBackward(s.G1, dA, dG1, tk, inter, dt);

        // First GEMM: dWgu[e] = Σ_{r∈e} dG1[r]ᵀ Xp[r]  ([2I,H]);  dXp[r] = dG1[r]·Wgu[e]  ([H]).
        var xp = new T[(long)tk * h];
        PermuteRows(s.X, idx.Gather, xp, k, h);
        var dGateUp = new T[(long)e * 2 * inter * h];
        var dXp = new T[(long)tk * h];
        for (int x = 0; x < e; x++)
        {
            int r0 = idx.ExpertOffsets[x], cnt = idx.TokenCounts[x];
            if (cnt == 0) continue;
            ReadOnlySpan<T> dG1e = dG1.AsSpan(r0 * 2 * inter, cnt * 2 * inter);
            Span<T> dWe = dGateUp.AsSpan(checked((int)((long)x * 2 * inter * h)), 2 * inter * h);
            gemm.MatMulTN(dG1e, xp.AsSpan(r0 * h, cnt * h), dWe, 2 * inter, h, cnt, dt);
            gemm.MatMulNN(dG1e, prm.GateUp.AsSpan(checked((int)((long)x * 2 * inter * h)), 2 * inter * h), dXp.AsSpan(r0 * h, cnt * h), cnt, h, 2 * inter, dt);
        }

        // Router: dL from dw (selection fixed), dWr = dLᵀ X, dX_router = dL·Wr.
        var dL = new T[(long)tokens * e];
        RouterBackward(s.Probs, s.Selected, dw, dL, tokens, e, k, c.NormTopKProb, dt);
        var dRouter = new T[(long)e * h];
        gemm.MatMulTN(dL, s.X, dRouter, e, h, tokens, dt);
        var dX = new T[(long)tokens * h];
        gemm.MatMulNN(dL, prm.Router, dX, tokens, h, e, dt);

        // dX[t] = dX_router[t] + Σ_j dXp[inverse[t*k+j]], j ascending; rounded once.
        for (int t = 0; t < tokens; t++)
        {
            Span<T> dxt = dX.AsSpan(t * h, h);
            for (int j = 0; j < k; j++)
            {
                ReadOnlySpan<T> src = dXp.AsSpan(idx.Inverse[t * k + j] * h, h);
                for (int col = 0; col < h; col++) dxt[col] += src[col];
            }
            Precision<T>.RoundInPlace(dxt, dt);
        }
        return new MoeGrads<T>(dX, dRouter, dGateUp, dDown);
    }
}
