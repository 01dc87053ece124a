using MoeNative.Interop;

namespace MoeNative.Reference;

/// <summary>
/// Everything one forward computed, in the layouts of docs/DESIGN.md's forward steps; the oracle record that fast paths
/// are compared against intermediate by intermediate, and what <see cref="MoeReference.Backward(MoeIntermediates, float[])"/>
/// reads. Float arrays hold storage-dtype values where the implementation rounds (see each reference's rounding notes).
/// Rows r are expert-ordered (see <see cref="RoutingIndices"/>), slots p = t*k + j are token-ordered.
/// </summary>
public sealed class MoeIntermediates
{
    public required MoeConfig Config { get; init; }
    /// <summary>Storage dtype of the run.</summary>
    public required ScalarType DType { get; init; }
    /// <summary>T.</summary>
    public required int Tokens { get; init; }
    /// <summary>The input rounded to <see cref="DType"/>. // [T,H]</summary>
    public required float[] Input { get; init; }
    /// <summary>X·Wrᵀ, storage dtype. // [T,E]</summary>
    public required float[] RouterLogits { get; init; }
    /// <summary>softmax(fp32(logits)), fp32. // [T,E]</summary>
    public required float[] RouterProbs { get; init; }
    /// <summary>Selected experts and routing weights (storage dtype) actually used.</summary>
    public required MoeRouting Routing { get; init; }
    /// <summary>m_sizes / gather / inverse of <see cref="Routing"/>.</summary>
    public required RoutingIndices Indices { get; init; }
    /// <summary>G1 = Xp·Wguᵀ, expert order. // [T*k,2I]</summary>
    public required float[] FirstGemm { get; init; }
    /// <summary>A = silu(G1[:, :I]) ⊙ G1[:, I:], expert order. // [T*k,I]</summary>
    public required float[] Intermediate { get; init; }
    /// <summary>G2 = A·Wdᵀ, expert order. // [T*k,H]</summary>
    public required float[] SecondGemm { get; init; }
    /// <summary>U[gather[r]] = G2[r], token-slot order. // [T*k,H]</summary>
    public required float[] Unpermuted { get; init; }
    /// <summary>Y[t] = Σ_j w[t,j]·U[t*k+j]. // [T,H]</summary>
    public required float[] Output { get; init; }

    /// <summary>m_sizes. // [E]</summary>
    public int[] TokenCounts => Indices.TokenCounts;
    /// <summary>Stable gather. // [T*k]</summary>
    public int[] Gather => Indices.Gather;
    /// <summary>Routing weights. // [T,k]</summary>
    public float[] RoutingWeights => Routing.Weights;
    /// <summary>Selected experts. // [T,k]</summary>
    public int[] SelectedExperts => Routing.Selected;
}
