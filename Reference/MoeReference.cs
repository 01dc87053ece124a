using MoeNative.Interop;

namespace MoeNative.Reference;

/// <summary>
/// A pure C# Qwen3-MoE expert block (forward + manual backward) on a GEMM backend. Two forwards with the same
/// semantics and different rounding points: <see cref="HfMoeReference"/> and <see cref="GroupedMoeReference"/>;
/// one backward for both. Not thread-safe (it remembers the last forward for <see cref="Backward(float[])"/>).
/// </summary>
public abstract class MoeReference : IMoeHostBlock
{
    public MoeConfig Config { get; }
    /// <summary>Storage dtype: inputs, weights and every storage-dtype intermediate are rounded to it.</summary>
    public ScalarType DType { get; }
    /// <summary>The weights, rounded to <see cref="DType"/> (the caller's object when already representable).</summary>
    public MoeWeights Weights { get; }
    public IGemmBackend Gemm { get; }
    /// <summary>"hf" or "grouped".</summary>
    public abstract string Name { get; }

    private readonly MoeParams<float> _params;
    private MoeIntermediates? _last;

    private protected abstract MoeForwardKind Kind { get; }

    /// <param name="weights">Layer weights; rounded (copied) to <paramref name="dtype"/> if needed.</param>
    /// <param name="dtype">Storage dtype to mirror.</param>
    /// <param name="gemm">GEMM backend; <see cref="HostGemm.Instance"/> when null.</param>
    private protected MoeReference(MoeWeights weights, ScalarType dtype, IGemmBackend? gemm)
    {
        ArgumentNullException.ThrowIfNull(weights);
        _ = dtype.SizeOf(); // validates the enum value
        Weights = weights.RoundedTo(dtype);
        Config = weights.Config;
        DType = dtype;
        Gemm = gemm ?? HostGemm.Instance;
        _params = new MoeParams<float>(Config, Weights.Gate, Weights.GateUpProj, Weights.DownProj);
    }

    /// <summary>
    /// Forward of T tokens. <paramref name="x"/> is rounded (copied) to the storage dtype. With
    /// <paramref name="routing"/> the given selection and weights are used (router logits and probabilities are still
    /// computed and reported); otherwise routing is computed (softmax, top-k, renorm). T = 0 returns empty tensors.
    /// </summary>
    /// <param name="x">hidden_states. // [T,H]</param>
    /// <param name="routing">Optional precomputed routing ([T,k] ids in [0,E), distinct per token; [T,k] weights, rounded to dtype here).</param>
    /// <exception cref="ArgumentException">x's length is not a multiple of H; routing does not match T, k or E.</exception>
    public MoeIntermediates Forward(float[] x, MoeRouting? routing = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        int h = Config.HiddenSize;
        if (x.Length % h != 0)
            throw new ArgumentException($"x must be [T,H={h}] (length a multiple of {h}), got {x.Length} elements.", nameof(x));
        int tokens = x.Length / h;
        MoeLimits.CheckReferenceTokens(Config, tokens, nameof(x));
        routing?.Validate(Config, tokens, nameof(routing));
        float[] xr = (float[])x.Clone();
        StoragePrecision.RoundInPlace(xr, DType);
        float[]? forcedWeights = null;
        if (routing is not null)
        {
            forcedWeights = (float[])routing.Weights.Clone();
            StoragePrecision.RoundInPlace(forcedWeights, DType);
        }
        MoeState<float> s = MoeCore<float>.Forward(Kind, Gemm, _params, xr, tokens, DType, (int[]?)routing?.Selected.Clone(), forcedWeights);
        _last = ToPublic(s);
        return _last;
    }

    /// <summary>Backward of the last <see cref="Forward"/>.</summary>
    /// <exception cref="InvalidOperationException">No forward yet.</exception>
    public MoeGradients Backward(float[] dY /*[T,H]*/) =>
        Backward(_last ?? throw new InvalidOperationException("Backward(dY) needs a Forward first (or pass the saved intermediates)."), dY);

    /// <summary>
    /// The five gradients for ∂loss/∂Y = <paramref name="dY"/> (rounded to the storage dtype first), from the saved
    /// forward. The router gradient holds the selection fixed and flows through the routing weights.
    /// </summary>
    /// <param name="saved">A forward of this layer (same config and dtype).</param>
    /// <param name="dY">grad_output. // [T,H]</param>
    /// <exception cref="ArgumentException">dY is not [T,H]; saved comes from another config or dtype.</exception>
    public MoeGradients Backward(MoeIntermediates saved, float[] dY)
    {
        ArgumentNullException.ThrowIfNull(saved);
        ArgumentNullException.ThrowIfNull(dY);
        if (saved.Config != Config || saved.DType != DType)
            throw new ArgumentException($"saved was computed for {saved.Config} in {saved.DType.ShortName()}, this block is {Config} in {DType.ShortName()}.", nameof(saved));
        if (dY.LongLength != (long)saved.Tokens * Config.HiddenSize)
            throw new ArgumentException($"dY must be [T={saved.Tokens},H={Config.HiddenSize}] = {(long)saved.Tokens * Config.HiddenSize} elements, got {dY.Length}.", nameof(dY));
        float[] dYr = (float[])dY.Clone();
        StoragePrecision.RoundInPlace(dYr, DType);
        MoeGrads<float> g = MoeCore<float>.Backward(Kind, Gemm, _params, ToState(saved), dYr);
        return new MoeGradients(Config, g.X, g.Router, g.GateUp, g.Down);
    }

    private static MoeIntermediates ToPublic(MoeState<float> s) => new()
    {
        Config = s.Config, DType = s.DType, Tokens = s.Tokens, Input = s.X, RouterLogits = s.Logits, RouterProbs = s.Probs,
        Routing = new MoeRouting(s.Tokens, s.Config.TopK, s.Selected, s.Weights), Indices = s.Indices,
        FirstGemm = s.G1, Intermediate = s.A, SecondGemm = s.G2, Unpermuted = s.U, Output = s.Y,
    };

    private static MoeState<float> ToState(MoeIntermediates m) => new()
    {
        Config = m.Config, DType = m.DType, Tokens = m.Tokens, X = m.Input, Logits = m.RouterLogits, Probs = m.RouterProbs,
        Selected = m.Routing.Selected, Weights = m.Routing.Weights, Indices = m.Indices,
        G1 = m.FirstGemm, A = m.Intermediate, G2 = m.SecondGemm, U = m.Unpermuted, Y = m.Output,
    };

    /// <summary>The <paramref name="kind"/> of reference over <paramref name="weights"/>.</summary>
    public static MoeReference Create(MoeReferenceKind kind, MoeWeights weights, ScalarType dtype, IGemmBackend? gemm = null) => kind switch
    {
        MoeReferenceKind.Hf => new HfMoeReference(weights, dtype, gemm),
        MoeReferenceKind.Grouped => new GroupedMoeReference(weights, dtype, gemm),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Expected Hf or Grouped."),
    };

    /// <summary>The CLI and file spelling of a kind: "hf" or "grouped" (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Another name.</exception>
    public static MoeReferenceKind ParseKind(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.Trim().ToLowerInvariant() switch
        {
            "hf" => MoeReferenceKind.Hf,
            "grouped" => MoeReferenceKind.Grouped,
            _ => throw new ArgumentException($"Unknown implementation '{name}'; expected hf or grouped.", nameof(name)),
        };
    }

    /// <summary><see cref="Create(MoeReferenceKind, MoeWeights, ScalarType, IGemmBackend?)"/> by the CLI's name ("hf" or "grouped").</summary>
    internal static MoeReference Create(string name, MoeWeights weights, ScalarType dtype, IGemmBackend? gemm = null) =>
        Create(ParseKind(name), weights, dtype, gemm);
}

/// <summary>Which formulation of the Hugging Face block a <see cref="MoeReference"/> computes.</summary>
public enum MoeReferenceKind
{
    /// <summary>The HF per-expert loop (<see cref="HfMoeReference"/>): the oracle.</summary>
    Hf,
    /// <summary>The grouped form (<see cref="GroupedMoeReference"/>): permute, grouped GEMMs, unpermute.</summary>
    Grouped,
}

/// <summary>
/// Hugging Face's <c>Qwen3MoeSparseMoeBlock</c> as written: for each expert hit (increasing id) gather its tokens,
/// <c>linear(x, gate_up_proj[e])</c> split into gate and up, <c>act_fn(gate) * up</c>, <c>linear(., down_proj[e])</c>,
/// multiply by the routing weight, <c>index_add_</c> into a zero storage-dtype output. Rounding mirrored for bf16/fp16:
/// every op whose HF result is a storage-dtype tensor is rounded to it (both Linears, act_fn, the product with up,
/// the product with the weight, each index_add_ step).
/// </summary>
public sealed class HfMoeReference(MoeWeights weights, ScalarType dtype, IGemmBackend? gemm = null) : MoeReference(weights, dtype, gemm)
{
    public override string Name => "hf";
    private protected override MoeForwardKind Kind => MoeForwardKind.HfLoop;
}

/// <summary>
/// The grouped formulation (docs/DESIGN.md forward steps 1–10): permute, a grouped GEMM written as a loop over experts,
/// silu-and-mul (rounded once), grouped GEMM, unpermute, top-k weighted sum (accumulated in fp32, rounded once).
/// </summary>
public sealed class GroupedMoeReference(MoeWeights weights, ScalarType dtype, IGemmBackend? gemm = null) : MoeReference(weights, dtype, gemm)
{
    public override string Name => "grouped";
    private protected override MoeForwardKind Kind => MoeForwardKind.Grouped;
}
