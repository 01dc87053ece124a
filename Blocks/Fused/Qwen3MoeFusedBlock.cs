using System.Runtime.InteropServices;
using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Blocks;

/// <summary>
/// The Qwen3-MoE expert layer (router, top-k, experts' SwiGLU MLPs, weighted combine) on the GPU through the
/// hand-written PTX kernels, forward and manual backward, stream-ordered with no host synchronisation inside.
/// </summary>
/// <remarks>
/// <para>Dimension legend: T tokens, H hidden, I intermediate, E experts, k experts per token, TK = T*k;
/// r = expert-ordered row, p = t*k + j = token slot; gather[r] = p, inverse[p] = r.</para>
/// <para><b>Forward</b> (one stream, in order):
/// router logits <c>L [T,E] = X·Wrᵀ</c> (GEMV kernel for T ≤ 256, else grouped NT with one group) → RouterForward (<c>probs [T,E] f32</c>, <c>sel [T,k]</c>,
/// <c>w [T,k]</c>) → RoutingIndices (<c>m_sizes [E]</c>, <c>gather</c>, <c>inverse [TK]</c>) → GEMM1 (gathering
/// the X rows <c>Xp[r] = X[gather[r]/k]</c> while loading, with or without PermuteX) →
/// <c>G1 [TK,2I] = Xp·Wgu[e]ᵀ</c> → SiluMul (<c>A [TK,I]</c>) → GEMM2 <c>G2 [TK,H] = A·Wd[e]ᵀ</c> (stored in
/// token-slot order as <c>U</c> with PermuteY; rows scaled by w with FuseMulPost) → Combine
/// (<c>Y [T,H] = Σ_j w·U</c>; through <c>inverse</c> unless PermuteY; weights 1 with FuseMulPost).</para>
/// <para><b>Backward</b>: CombineBackward (<c>dU</c> in G2's layout, <c>dw [T,k] f32</c>) → GEMM2 dX
/// (<c>dA = dG2·Wd[e]</c>, loading dU through gather with PermuteY) and dW (<c>dWd[e] = Σ dG2ᵀ A</c>) →
/// SiluMulBackward (<c>dG1 [TK,2I]</c>) → GEMM1 dX (<c>dXp = dG1·Wgu[e]</c>, stored straight to token-slot order)
/// and dW (<c>dWgu[e] = Σ dG1ᵀ Xp</c>, gathering X rows with PermuteX or on the sm_90a path, else from an Xp copy
/// made here) → RouterBackward (<c>dL [T,E]</c>) → router dW
/// (<c>dWr = dLᵀ·X</c>, TN one group) and router dX (<c>dXr = dL·Wr</c>, NN one group) → SumOverTopK (<c>dX[t] = dXr[t] + Σ_j dXp[t*k+j]</c>).</para>
/// <para><b>Saved state</b>: the backward reads the forward's workspace and the caller's X (and routing, when passed
/// in) buffers: keep them unchanged between a forward and its backward.</para>
/// <para><b>Workspace</b>: allocated on the first call of a shape class (T rounded up to a power of two), grown, never
/// shrunk; calls with a smaller T reuse it. Growing reallocates: re-capture graphs after a larger T.</para>
/// <para><b>Largest T</b>: <see cref="MoeLimits.MaxDeviceTokens"/> (T·k rows are int32 in the kernels; byte offsets are
/// 64-bit), checked by every entry point before any allocation; the host API with intermediates also needs
/// <see cref="MoeLimits.MaxReferenceTokens"/> (its [T·k,2I] results are .NET arrays).</para>
/// <para><b>Graphs</b>: <see cref="Forward{TElem}"/> can be captured in a <see cref="CudaGraph"/> once the block
/// has run that shape class directly (workspace allocated, autotune done): see <see cref="Reserve"/>.</para>
/// <para>Not thread-safe: one caller at a time. A call while another thread is inside one of the block's entry
/// points throws <see cref="InvalidOperationException"/> (see <see cref="BlockEntryGuard"/>); use one block per thread.</para>
/// </remarks>
public sealed partial class Qwen3MoeFusedBlock : IMoeDeviceBlock, IMoeHostBlock
{
    private readonly Qwen3MoeDeviceWeights _weights;
    private readonly bool _ownsWeights;
    private readonly GemmTuner _tuner;
    private readonly MoeKernels _kernels;
    private readonly GroupedGemm _gemm;
    private readonly FusedDecodePath _decode;

    private BlockWorkspace? _forwardWorkspace;     // per shape class, grow-only
    private BlockWorkspace? _backwardWorkspace;    // per shape class, grow-only, allocated on the first backward
    private DeviceBuffer<int>? _iota;              // [Tcap+1] i32: iota[t] = t; &iota[T] is m_sizes [1] of a one-group GEMM
    private DeviceBuffer<byte>? _ones;             // [Tcap*k] dtype, all 1 (FuseMulPost combine weights)
    private RouterRowSplit? _routerSplit;          // m_sizes of the router dW's groups of rows (Tcap)
    private HostIo? _hostIo;                       // staging buffers of the host API
    private CudaStream? _hostStream;
    private SavedForward _saved;
    private bool _disposed;
    private readonly BlockEntryGuard _entry = new(); // one thread at a time (BlockEntryGuard says why)

    /// <summary>Uploads <paramref name="weights"/> in <paramref name="dtype"/> (owned by the block).</summary>
    /// <exception cref="ArgumentException">Options that contradict each other (see <see cref="FusedBlockOptions.Validate"/>).</exception>
    public Qwen3MoeFusedBlock(CudaContext context, MoeWeights weights, ScalarType dtype, FusedBlockOptions? options = null)
        : this(UploadValidated(context, weights, dtype, options), options, ownsWeights: true)
    {
    }

    /// <summary>A block over already uploaded weights (not owned: dispose them after the block).</summary>
    /// <exception cref="ArgumentException">Options that contradict each other.</exception>
    public Qwen3MoeFusedBlock(Qwen3MoeDeviceWeights weights, FusedBlockOptions? options = null)
        : this(weights, options, ownsWeights: false)
    {
    }

    private Qwen3MoeFusedBlock(Qwen3MoeDeviceWeights weights, FusedBlockOptions? options, bool ownsWeights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        options ??= FusedBlockOptions.Default;
        try
        {
            options.Validate(nameof(options));
            _weights = weights;
            _ownsWeights = ownsWeights;
            Options = options;
            _tuner = new GemmTuner(options, options.TuningStore is null ? null : TuningContext.For(weights.Context, weights.Config, weights.DType));
            _kernels = MoeKernels.For(weights.Context);
            _gemm = GroupedGemm.For(weights.Context);
            _decode = new FusedDecodePath(weights.Context, weights.Config, weights.DType, options);
        }
        catch
        {
            if (ownsWeights) weights.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A block over one layer loaded from safetensors (see <see cref="Qwen3MoeDeviceWeights.FromSafetensors"/>);
    /// the block owns the uploaded weights.
    /// </summary>
    public static Qwen3MoeFusedBlock FromSafetensors(CudaContext context, MoeConfig config, string fileOrDirectory, ScalarType dtype,
        int? layer = null, FusedBlockOptions? options = null)
    {
        (options ?? FusedBlockOptions.Default).Validate(nameof(options)); // before the (slow) load
        return new Qwen3MoeFusedBlock(Qwen3MoeDeviceWeights.FromSafetensors(context, config, fileOrDirectory, dtype, layer), options,
            ownsWeights: true);
    }

    private static Qwen3MoeDeviceWeights UploadValidated(CudaContext context, MoeWeights weights, ScalarType dtype, FusedBlockOptions? options)
    {
        (options ?? FusedBlockOptions.Default).Validate(nameof(options)); // before the (slow) upload
        return Qwen3MoeDeviceWeights.Upload(context, weights, dtype);
    }

    /// <summary>The context every buffer passed in must belong to.</summary>
    public CudaContext Context => _weights.Context;

    /// <summary>H, I, E, k, norm_topk_prob.</summary>
    public MoeConfig Config => _weights.Config;

    /// <summary>Storage dtype of weights, activations and gradients.</summary>
    public ScalarType DType => _weights.DType;

    /// <summary>The options this block was built with.</summary>
    public FusedBlockOptions Options { get; }

    /// <summary>The device weights (shared or owned).</summary>
    public Qwen3MoeDeviceWeights Weights => _weights;

    /// <summary>Every autotune measurement so far (empty unless <see cref="FusedBlockOptions.Autotune"/>).</summary>
    public IReadOnlyList<GemmTiming> AutotuneTimings => _tuner.Timings;

    /// <summary>The config chosen per (GEMM, shape class) by autotune so far.</summary>
    public IReadOnlyDictionary<(FusedGemm Gemm, int ShapeClassTokens), GemmConfig?> ChosenConfigs => _tuner.Chosen;

    /// <summary>The chosen configs that came from <see cref="FusedBlockOptions.TuningStore"/> without timing.</summary>
    public IReadOnlySet<(FusedGemm Gemm, int ShapeClassTokens)> StoredConfigsUsed => _tuner.FromStore;

    /// <summary>Token capacity of the current forward workspace (0 before the first call).</summary>
    public int WorkspaceCapacityTokens => _forwardWorkspace?.Layout.CapacityTokens ?? 0;

    /// <summary>Device bytes of the current workspaces (forward + backward).</summary>
    public long WorkspaceBytes => (_forwardWorkspace?.Layout.TotalBytes ?? 0) + (_backwardWorkspace?.Layout.TotalBytes ?? 0);

    /// <summary>"fused" (the benchmark's row name).</summary>
    public string Name => "fused";

    /// <summary>True: no host synchronisation inside a forward/backward once its shape class is reserved and tuned.</summary>
    public bool IsGraphCapturable => true;

    /// <summary>Experts hit by the last forward's own top-k (reads the selection back: synchronises the context).</summary>
    /// <exception cref="InvalidOperationException">No forward yet, or it used caller-provided routing.</exception>
    public int CountExpertsHit() => Benchmarking.MoeCost.ExpertsHit(ReadSelected(_saved.Tokens), Config.NumExperts);

    // ==== device API ================================================================================================

    /// <summary>
    /// Allocates the workspace for up to <paramref name="tokens"/> tokens (forward, and backward when asked) ahead of
    /// time. Synchronous. Call before capturing a graph of a shape class the block has not run yet (autotune, when on,
    /// still happens on the first forward/backward of the shape class, which must therefore not be captured).
    /// </summary>
    public void Reserve(int tokens, bool backward = false)
    {
        ThrowIfDisposed();
        using BlockEntryGuard.Scope entry = _entry.Enter(this);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tokens);
        MoeLimits.CheckDeviceTokens(Config, tokens, nameof(tokens));
        EnsureForwardWorkspace(tokens);
        if (backward) EnsureBackwardWorkspace(tokens);
    }

    /// <summary>
    /// Forward: <c>Y [T,H] = MoE(X [T,H])</c> on <paramref name="stream"/>, X and Y on the device in the block's
    /// dtype (<typeparamref name="TElem"/> = <see cref="BFloat16"/>, <see cref="Half"/> or <see cref="float"/>).
    /// Buffers may be longer than T rows. With <paramref name="routing"/>, its selected experts and weights replace
    /// the router's top-k (the router logits and softmax are still computed: the backward needs them).
    /// Asynchronous; no host synchronisation (except on the first call of a shape class with autotune on).
    /// </summary>
    /// <exception cref="ArgumentException">Wrong element type for the dtype, a buffer too short, X and Y aliased,
    /// a buffer or stream of another context.</exception>
    /// <exception cref="ObjectDisposedException">The block was disposed.</exception>
    public void Forward<TElem>(CudaStream stream, DeviceBuffer<TElem> x /*[T,H]*/, DeviceBuffer<TElem> y /*[T,H]*/,
        int tokens, DeviceRouting<TElem>? routing = null) where TElem : unmanaged
    {
        ThrowIfDisposed();
        using BlockEntryGuard.Scope entry = _entry.Enter(this);
        BlockChecks.Forward(Context, Config, DType, stream, x, y, tokens, routing);
        if (tokens == 0)
        {
            _saved = new SavedForward(0, DeviceRange.Null, DeviceRange.Null, DeviceRange.Null, true);
            return;
        }
        ForwardCore(stream, x.AsRange(), y.AsRange(), tokens,
            routing?.Selected.AsRange() ?? DeviceRange.Null, routing?.Weights.AsRange() ?? DeviceRange.Null);
    }

    /// <summary>
    /// Backward of the last forward: given <c>dY [T,H]</c>, writes the five gradients (overwritten, not accumulated)
    /// on <paramref name="stream"/>. Reads the last forward's workspace, X and routing buffers. Asynchronous.
    /// </summary>
    /// <exception cref="InvalidOperationException">FuseMulPost (inference only), or no forward ran before.</exception>
    /// <exception cref="ArgumentException">Wrong element type, a buffer too short, or another context.</exception>
    /// <exception cref="ObjectDisposedException">The block was disposed.</exception>
    public void Backward<TElem>(CudaStream stream, DeviceBuffer<TElem> dY /*[T,H]*/, DeviceGradients<TElem> gradients)
        where TElem : unmanaged
    {
        ThrowIfDisposed();
        using BlockEntryGuard.Scope entry = _entry.Enter(this);
        ThrowIfInferenceOnly();
        BlockChecks.BackwardArguments(stream, dY, gradients);
        BlockChecks.ElementType(DType, typeof(TElem), nameof(dY));
        if (!_saved.Valid)
            throw new InvalidOperationException("Backward needs a preceding Forward on this block (its workspace holds the saved activations).");
        int tokens = _saved.Tokens;
        BlockChecks.BackwardShapes(Config, tokens, dY.Length, gradients.HiddenStates.Length, gradients.Gate.Length,
            gradients.GateUpProj.Length, gradients.DownProj.Length);
        BlockChecks.BackwardContexts(Context, stream, dY, gradients);
        if (tokens == 0)
        {
            // T = 0: no token reaches any expert; every weight gradient is zero and dX is empty.
            gradients.Gate.FillBytes(0, stream);
            gradients.GateUpProj.FillBytes(0, stream);
            gradients.DownProj.FillBytes(0, stream);
            return;
        }
        BackwardCore(stream, dY.AsRange(), gradients.HiddenStates.AsRange(), gradients.Gate.AsRange(),
            gradients.GateUpProj.AsRange(), gradients.DownProj.AsRange());
    }

    // ==== checks ====================================================================================================

    private void ThrowIfInferenceOnly() => Options.EnsureTrainable();

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try
        {
            _hostStream?.Synchronize();
        }
        catch (CudaException)
        {
            // NOTE: Dispose must not throw: an error of earlier asynchronous work is reported by the host calls
            // that synchronised it, not here.
        }
        _hostIo?.Dispose();
        _forwardWorkspace?.Dispose();
        _backwardWorkspace?.Dispose();
        _iota?.Dispose();
        _routerSplit?.Dispose();
        _ones?.Dispose();
        _decode.Dispose();
        _hostStream?.Dispose();
        if (_ownsWeights) _weights.Dispose();
    }

    /// <summary>What the backward needs from the last forward: T and the caller's X / routing addresses.</summary>
    private readonly record struct SavedForward(int Tokens, DeviceRange X, DeviceRange Selected, DeviceRange Weights, bool Valid);

}
