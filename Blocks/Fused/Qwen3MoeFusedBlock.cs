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
/// SiluMulBackward (<c>dG1 [TK,2I]</c>) → GEMM1 dX (<c>dXp = dG1·Wgu[e]</c>, stored straight to token-slot order
/// with PermuteX, else in expert order then reordered through <c>inverse</c>) and dW (<c>dWgu[e] = Σ dG1ᵀ Xp</c>,
/// gathering X rows with PermuteX, else from an Xp copy made here) → RouterBackward (<c>dL [T,E]</c>) → router dW
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
/// <para>Not thread-safe: one caller at a time.</para>
/// </remarks>
public sealed class Qwen3MoeFusedBlock : IDisposable
{
    private readonly Qwen3MoeDeviceWeights _weights;
    private readonly bool _ownsWeights;
    private readonly GemmTuner _tuner;
    private readonly MoeKernels _kernels;
    private readonly GroupedGemm _gemm;

    private FusedWorkspace? _forwardWorkspace;     // per shape class, grow-only
    private FusedWorkspace? _backwardWorkspace;    // per shape class, grow-only, allocated on the first backward
    private DeviceBuffer<int>? _iota;              // [Tcap+1] i32: iota[t] = t; &iota[T] is m_sizes [1] of a one-group GEMM
    private DeviceBuffer<byte>? _ones;             // [Tcap*k] dtype, all 1 (FuseMulPost combine weights)
    private HostIo? _hostIo;                       // staging buffers of the host API
    private CudaStream? _hostStream;
    private SavedForward _saved;
    private bool _disposed;

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
            _tuner = new GemmTuner(options);
            _kernels = MoeKernels.For(weights.Context);
            _gemm = GroupedGemm.For(weights.Context);
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

    /// <summary>Token capacity of the current forward workspace (0 before the first call).</summary>
    public int WorkspaceCapacityTokens => _forwardWorkspace?.Layout.CapacityTokens ?? 0;

    /// <summary>Device bytes of the current workspaces (forward + backward).</summary>
    public long WorkspaceBytes => (_forwardWorkspace?.Layout.TotalBytes ?? 0) + (_backwardWorkspace?.Layout.TotalBytes ?? 0);

    // ==== device API ================================================================================================

    /// <summary>
    /// Allocates the workspace for up to <paramref name="tokens"/> tokens (forward, and backward when asked) ahead of
    /// time. Synchronous. Call before capturing a graph of a shape class the block has not run yet (autotune, when on,
    /// still happens on the first forward/backward of the shape class, which must therefore not be captured).
    /// </summary>
    public void Reserve(int tokens, bool backward = false)
    {
        ThrowIfDisposed();
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
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (routing is not null)
        {
            ArgumentNullException.ThrowIfNull(routing.Selected, nameof(routing));
            ArgumentNullException.ThrowIfNull(routing.Weights, nameof(routing));
        }
        FusedBlockChecks.ElementType(DType, typeof(TElem), nameof(x));
        FusedBlockChecks.ForwardShapes(Config, DType, tokens, x.Length, y.Length, routing?.Selected.Length, routing?.Weights.Length);
        CheckContext(stream.Context, nameof(stream));
        CheckContext(x.Context, nameof(x));
        CheckContext(y.Context, nameof(y));
        if (routing is not null)
        {
            CheckContext(routing.Selected.Context, nameof(routing));
            CheckContext(routing.Weights.Context, nameof(routing));
        }
        if (ReferenceEquals(x, y) || (tokens > 0 && x.DevicePointer == y.DevicePointer))
            throw new ArgumentException("x and y must be different buffers.", nameof(y));
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
        ThrowIfInferenceOnly();
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(dY);
        ArgumentNullException.ThrowIfNull(gradients);
        ArgumentNullException.ThrowIfNull(gradients.X, nameof(gradients));
        ArgumentNullException.ThrowIfNull(gradients.Router, nameof(gradients));
        ArgumentNullException.ThrowIfNull(gradients.GateUp, nameof(gradients));
        ArgumentNullException.ThrowIfNull(gradients.Down, nameof(gradients));
        FusedBlockChecks.ElementType(DType, typeof(TElem), nameof(dY));
        if (!_saved.Valid)
            throw new InvalidOperationException("Backward needs a preceding Forward on this block (its workspace holds the saved activations).");
        int tokens = _saved.Tokens;
        FusedBlockChecks.BackwardShapes(Config, tokens, dY.Length, gradients.X.Length, gradients.Router.Length,
            gradients.GateUp.Length, gradients.Down.Length);
        CheckContext(stream.Context, nameof(stream));
        CheckContext(dY.Context, nameof(dY));
        CheckContext(gradients.X.Context, "gradients.X");
        CheckContext(gradients.Router.Context, "gradients.Router");
        CheckContext(gradients.GateUp.Context, "gradients.GateUp");
        CheckContext(gradients.Down.Context, "gradients.Down");
        if (tokens == 0)
        {
            // T = 0: no token reaches any expert; every weight gradient is zero and dX is empty.
            gradients.Router.FillBytes(0, stream);
            gradients.GateUp.FillBytes(0, stream);
            gradients.Down.FillBytes(0, stream);
            return;
        }
        BackwardCore(stream, dY.AsRange(), gradients.X.AsRange(), gradients.Router.AsRange(),
            gradients.GateUp.AsRange(), gradients.Down.AsRange());
    }

    // ==== host API ==================================================================================================

    /// <summary>
    /// Host convenience forward: uploads <paramref name="x"/> (rounded to the dtype), runs <see cref="Forward{TElem}"/>
    /// on the block's own stream, waits, and returns the output and router logits — and every intermediate when
    /// <paramref name="intermediates"/> is true (otherwise those arrays are empty). With <paramref name="routing"/>,
    /// its experts/weights (weights rounded to the dtype) replace the router's top-k.
    /// </summary>
    /// <exception cref="ArgumentException">x not [T,H], routing invalid for the config or T.</exception>
    public MoeIntermediates Forward(float[] x /*[T,H]*/, int tokens, MoeRouting? routing = null, bool intermediates = false)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(x);
        MoeConfig c = Config;
        MoeLimits.CheckDeviceTokens(c, tokens, nameof(tokens));
        if (intermediates) MoeLimits.CheckReferenceTokens(c, tokens, nameof(tokens)); // [T*k,2I] host arrays
        if (x.LongLength != (long)tokens * c.HiddenSize)
            throw new ArgumentException($"x must be [T={tokens},H={c.HiddenSize}] = {(long)tokens * c.HiddenSize} elements, got {x.LongLength}.", nameof(x));
        routing?.Validate(c, tokens, nameof(routing));
        CudaStream stream = HostStream();
        int tk = tokens * c.TopK;
        if (tokens == 0)
        {
            _saved = new SavedForward(0, DeviceRange.Null, DeviceRange.Null, DeviceRange.Null, true);
            return HostResults.Empty(c, DType);
        }

        HostIo io = EnsureHostIo(tokens);
        DeviceTransfer.Upload(io.X, 0, x, DType);
        DeviceRange selIn = DeviceRange.Null, wIn = DeviceRange.Null;
        if (routing is not null)
        {
            DeviceTransfer.UploadInt32(io.Selected, 0, routing.Selected);
            DeviceTransfer.Upload(io.RoutingWeights, 0, routing.Weights, DType);
            selIn = io.Selected.AsRange();
            wIn = io.RoutingWeights.AsRange();
        }
        io.Y.FillBytes(0xFF, stream); // poison: an unwritten element reads back as NaN
        if (intermediates) EnsureForwardWorkspace(tokens).Poison(stream); // unwritten intermediates read back as NaN / -1
        ForwardCore(stream, io.X.AsRange(), io.Y.AsRange(), tokens, selIn, wIn);
        stream.Synchronize();
        return HostResults.ReadForward(this, io, _forwardWorkspace!, tokens, tk, routing, intermediates);
    }

    /// <summary>
    /// Host convenience backward of the last host <see cref="Forward(float[], int, MoeRouting?, bool)"/>: uploads
    /// <paramref name="dY"/>, runs <see cref="Backward{TElem}"/>, waits, returns the five gradients.
    /// </summary>
    /// <exception cref="InvalidOperationException">FuseMulPost, or no host forward before.</exception>
    /// <exception cref="ArgumentException">dY not [T,H] for the T of the last forward.</exception>
    public MoeGradients Backward(float[] dY /*[T,H]*/)
    {
        ThrowIfDisposed();
        ThrowIfInferenceOnly();
        ArgumentNullException.ThrowIfNull(dY);
        if (!_saved.Valid || (_saved.Tokens > 0 && (_hostIo is null || _saved.X.Pointer != _hostIo.X.DevicePointer)))
            throw new InvalidOperationException("The host Backward needs a preceding host Forward on this block.");
        int tokens = _saved.Tokens;
        MoeConfig c = Config;
        if (dY.LongLength != (long)tokens * c.HiddenSize)
            throw new ArgumentException($"dY must be [T={tokens},H={c.HiddenSize}] = {(long)tokens * c.HiddenSize} elements (T of the last forward), got {dY.LongLength}.", nameof(dY));
        if (tokens == 0)
            return new MoeGradients(c, [], new float[c.RouterElements], new float[c.GateUpElements], new float[c.DownElements]);
        CudaStream stream = HostStream();
        HostIo io = _hostIo!;
        HostGradients g = io.EnsureGradients(Context, c, DType);
        DeviceTransfer.Upload(io.DY, 0, dY, DType);
        io.DX.FillBytes(0xFF, stream);
        g.Poison(stream);
        BackwardCore(stream, io.DY.AsRange(), io.DX.AsRange(), g.Router.AsRange(), g.GateUp.AsRange(), g.Down.AsRange());
        stream.Synchronize();
        return new MoeGradients(c,
            DeviceTransfer.Download(io.DX, 0, (long)tokens * c.HiddenSize, DType),
            DeviceTransfer.Download(g.Router, 0, c.RouterElements, DType),
            DeviceTransfer.Download(g.GateUp, 0, c.GateUpElements, DType),
            DeviceTransfer.Download(g.Down, 0, c.DownElements, DType));
    }

    // ==== launch sequences ==========================================================================================

    private void ForwardCore(CudaStream s, DeviceRange x /*[T,H]*/, DeviceRange y /*[T,H]*/, int tokens, DeviceRange selectedIn /*[T,k] or null*/, DeviceRange weightsIn /*[T,k] or null*/)
    {
        MoeConfig c = Config;
        ScalarType dt = DType;
        int h = c.HiddenSize, i = c.IntermediateSize, e = c.NumExperts, k = c.TopK, tk = tokens * k;
        int shapeClass = FusedWorkspaceLayout.ShapeClassTokens(tokens);
        FusedWorkspace ws = EnsureForwardWorkspace(tokens);
        DeviceRange logits = ws.Range(FusedBuffer.Logits);            // [T,E]  dtype
        DeviceRange probs = ws.Range(FusedBuffer.Probs);              // [T,E]  f32
        DeviceRange selOwn = ws.Range(FusedBuffer.Selected);          // [T,k]  i32
        DeviceRange wOwn = ws.Range(FusedBuffer.RoutingWeights);      // [T,k]  dtype
        DeviceRange mSizes = ws.Range(FusedBuffer.MSizes);            // [E]    i32
        DeviceRange gather = ws.Range(FusedBuffer.Gather);            // [TK]   i32
        DeviceRange inverse = ws.Range(FusedBuffer.Inverse);          // [TK]   i32
        DeviceRange g1 = ws.Range(FusedBuffer.FirstGemm);             // [TK,2I] dtype, expert order
        DeviceRange act = ws.Range(FusedBuffer.Intermediate);         // [TK,I]  dtype, expert order
        DeviceRange g2 = ws.Range(FusedBuffer.SecondGemm);            // [TK,H]  dtype, expert order (token-slot order with PermuteY)
        var routerRows = new GroupedRows(_iota!.PointerAt(tokens), 0, tokens, 1, 1); // one group of T rows
        var expertRows = new GroupedRows(mSizes.Pointer, gather.Pointer, tk, e, k);

        // 1. router logits L = X·Wrᵀ: a GEMV kernel for small T (a tiled GEMM would walk H in series on one or two
        //    CTAs), else the grouped NT GEMM with one group
        DeviceRange wr = _weights.RouterRange;
        if (MoeKernels.CanRouterLogitsGemv(dt, tokens, h, x, wr, logits))
            _kernels.RouterLogitsGemv(s, dt, x, wr, logits, tokens, e, h);
        else
            _tuner.Run(FusedGemm.RouterForward, shapeClass, s, () => Candidates(GroupedGemmLayout.ForwardNT, tokens, e, h),
                cfg => _gemm.ForwardNT(s, dt, cfg, x, wr, logits, routerRows, e, h, RowSource.Identity, RowTarget.Identity, DeviceRange.Null));
        Probe(s, "router_logits");
        // 2. softmax (fp32), top-k, renorm, cast
        _kernels.RouterForward(s, dt, logits, probs, selOwn, wOwn, tokens, e, k, c.NormTopKProb);
        Probe(s, "router_softmax_topk");
        DeviceRange sel = selectedIn.IsNull ? selOwn : selectedIn;
        DeviceRange w = weightsIn.IsNull ? wOwn : weightsIn;
        // 3. m_sizes, stable gather, inverse
        _kernels.RoutingIndices(s, sel, mSizes, gather, inverse, tk, e);
        Probe(s, "routing_indices");
        // 4. Xp = X[gather/k]: always fused into GEMM1's loads (a(r) = gather[r]/k), with or without PermuteX: the
        //    same A values as a gathered copy (bit-identical G1), without the copy's TK·H writes and reads.
        DeviceRange a1 = x;
        RowSource a1Rows = RowSource.GatherToken;
        // 5. G1 = Xp·Wgu[e]ᵀ
        DeviceRange wgu = _weights.GateUpRange;
        _tuner.Run(FusedGemm.FirstForward, shapeClass, s, () => Candidates(GroupedGemmLayout.ForwardNT, tk, 2 * i, h),
            cfg => _gemm.ForwardNT(s, dt, cfg, a1, wgu, g1, expertRows, 2 * i, h, a1Rows, RowTarget.Identity, DeviceRange.Null));
        Probe(s, "gemm1");
        // 6. A = silu(G1[:, :I]) ⊙ G1[:, I:]
        _kernels.SiluMulForward(s, dt, g1, act, tk, i);
        Probe(s, "silu_mul");
        // 7. G2 = A·Wd[e]ᵀ (scatter to token-slot order with PermuteY; × w with FuseMulPost)
        DeviceRange wd = _weights.DownRange;
        RowTarget g2Rows = Options.PermuteY ? RowTarget.Scatter : RowTarget.Identity;
        DeviceRange rowScale = Options.FuseMulPost ? w : DeviceRange.Null;
        _tuner.Run(FusedGemm.SecondForward, shapeClass, s, () => Candidates(GroupedGemmLayout.ForwardNT, tk, h, i),
            cfg => _gemm.ForwardNT(s, dt, cfg, act, wd, g2, expertRows, h, i, RowSource.Identity, g2Rows, rowScale));
        Probe(s, "gemm2");
        // 8. Y[t] = Σ_j w[t,j]·U[t*k+j]
        DeviceRange rowOfSlot = Options.PermuteY ? DeviceRange.Null : inverse;
        DeviceRange combineWeights = Options.FuseMulPost ? _ones!.AsRange() : w;
        _kernels.CombineForward(s, dt, g2, rowOfSlot, combineWeights, y, tokens, k, h);
        Probe(s, "combine");

        _saved = new SavedForward(tokens, x, sel, w, true);
    }

    private void BackwardCore(CudaStream s, DeviceRange dY /*[T,H]*/, DeviceRange dX /*[T,H]*/, DeviceRange dRouter /*[E,H]*/,
        DeviceRange dGateUp /*[E,2I,H]*/, DeviceRange dDown /*[E,H,I]*/)
    {
        MoeConfig c = Config;
        ScalarType dt = DType;
        int tokens = _saved.Tokens;
        int h = c.HiddenSize, i = c.IntermediateSize, e = c.NumExperts, k = c.TopK, tk = tokens * k;
        int shapeClass = FusedWorkspaceLayout.ShapeClassTokens(tokens);
        FusedWorkspace fw = _forwardWorkspace!;
        FusedWorkspace bw = EnsureBackwardWorkspace(tokens);
        DeviceRange x = _saved.X, sel = _saved.Selected, w = _saved.Weights;
        DeviceRange probs = fw.Range(FusedBuffer.Probs);
        DeviceRange mSizes = fw.Range(FusedBuffer.MSizes), gather = fw.Range(FusedBuffer.Gather), inverse = fw.Range(FusedBuffer.Inverse);
        DeviceRange g1 = fw.Range(FusedBuffer.FirstGemm);             // [TK,2I]
        DeviceRange act = fw.Range(FusedBuffer.Intermediate);         // [TK,I]
        DeviceRange u = fw.Range(FusedBuffer.SecondGemm);             // [TK,H] layout of the forward's GEMM2 output
        DeviceRange dU = bw.Range(FusedBuffer.DSecondGemm);           // [TK,H] same layout as u
        DeviceRange dWeights = bw.Range(FusedBuffer.DRoutingWeights); // [T,k] f32
        DeviceRange dAct = bw.Range(FusedBuffer.DIntermediate);       // [TK,I]
        DeviceRange dG1 = bw.Range(FusedBuffer.DFirstGemm);           // [TK,2I]
        DeviceRange dXpSlots = bw.Range(FusedBuffer.DXPermutedSlotOrder); // [TK,H] token-slot order
        DeviceRange dLogits = bw.Range(FusedBuffer.DLogits);          // [T,E]
        DeviceRange dXRouter = bw.Range(FusedBuffer.DXRouter);        // [T,H]
        var routerRows = new GroupedRows(_iota!.PointerAt(tokens), 0, tokens, 1, 1);
        var expertRows = new GroupedRows(mSizes.Pointer, gather.Pointer, tk, e, k);
        DeviceRange wr = _weights.RouterRange, wgu = _weights.GateUpRange, wd = _weights.DownRange;

        // 1. dU[row(p)] = w[p]·dY[t], dw[p] = <dY[t], U[row(p)]>
        DeviceRange rowOfSlot = Options.PermuteY ? DeviceRange.Null : inverse;
        _kernels.CombineBackward(s, dt, dY, u, rowOfSlot, w, dU, dWeights, tokens, k, h);
        Probe(s, "bwd_combine");
        // 2. GEMM2 dX: dA[r] = dG2[r]·Wd[e]   (dG2[r] = dU[gather[r]] with PermuteY)
        RowSource dG2Rows = Options.PermuteY ? RowSource.Gather : RowSource.Identity;
        _tuner.Run(FusedGemm.SecondBackwardData, shapeClass, s, () => Candidates(GroupedGemmLayout.BackwardDataNN, tk, h, i),
            cfg => _gemm.BackwardDataNN(s, dt, cfg, dU, wd, dAct, expertRows, h, i, dG2Rows, RowTarget.Identity));
        Probe(s, "bwd_gemm2_dx");
        // 3. GEMM2 dW: dWd[e] = Σ_{r∈e} dG2[r]ᵀ A[r]
        _tuner.Run(FusedGemm.SecondBackwardWeight, shapeClass, s, () => Candidates(GroupedGemmLayout.BackwardWeightTN, tk, h, i),
            cfg => _gemm.BackwardWeightTN(s, dt, cfg, dU, act, dDown, expertRows, h, i, dG2Rows, RowSource.Identity));
        Probe(s, "bwd_gemm2_dw");
        // 4. dG1 = [dg, du] from G1 and dA
        _kernels.SiluMulBackward(s, dt, g1, dAct, dG1, tk, i);
        Probe(s, "bwd_silu_mul");
        // 5. GEMM1 dX: dXp[r] = dG1[r]·Wgu[e], to token-slot order (stored permuted with PermuteX)
        if (Options.PermuteX)
        {
            _tuner.Run(FusedGemm.FirstBackwardData, shapeClass, s, () => Candidates(GroupedGemmLayout.BackwardDataNN, tk, 2 * i, h),
                cfg => _gemm.BackwardDataNN(s, dt, cfg, dG1, wgu, dXpSlots, expertRows, 2 * i, h, RowSource.Identity, RowTarget.Scatter));
            Probe(s, "bwd_gemm1_dx");
        }
        else
        {
            DeviceRange dXpExpert = bw.Range(FusedBuffer.DXPermutedExpertOrder); // [TK,H] expert order
            _tuner.Run(FusedGemm.FirstBackwardData, shapeClass, s, () => Candidates(GroupedGemmLayout.BackwardDataNN, tk, 2 * i, h),
                cfg => _gemm.BackwardDataNN(s, dt, cfg, dG1, wgu, dXpExpert, expertRows, 2 * i, h, RowSource.Identity, RowTarget.Identity));
            // NOTE: GatherRows with k = 1 and inverse as the index is the unpermute dXpSlots[p] = dXpExpert[inverse[p]].
            _kernels.GatherRows(s, dt, dXpExpert, inverse, dXpSlots, tk, 1, h);
            Probe(s, "bwd_gemm1_dx");
        }
        // 6. GEMM1 dW: dWgu[e] = Σ_{r∈e} dG1[r]ᵀ Xp[r]   (Xp[r] = X[gather[r]/k]: gathered while loading with PermuteX,
        //    else copied first)
        DeviceRange xpSource = x;
        RowSource xpRows = RowSource.GatherToken;
        if (!Options.PermuteX)
        {
            // NOTE: the forward gathered X inside GEMM1 and kept no copy; the dW GEMM reads a contiguous Xp faster than
            // gathered rows (H100, T=4096: 1.14 ms vs 1.24 ms), more than the copy costs (65 us), so make it here.
            xpSource = fw.Range(FusedBuffer.XPermuted);
            _kernels.GatherRows(s, dt, x, gather, xpSource, tk, k, h);
            xpRows = RowSource.Identity;
        }
        _tuner.Run(FusedGemm.FirstBackwardWeight, shapeClass, s, () => Candidates(GroupedGemmLayout.BackwardWeightTN, tk, 2 * i, h),
            cfg => _gemm.BackwardWeightTN(s, dt, cfg, dG1, xpSource, dGateUp, expertRows, 2 * i, h, RowSource.Identity, xpRows));
        Probe(s, "bwd_gemm1_dw");
        // 7. router: dL = P ⊙ (dP − Σ_e P_e dP_e) from dw
        _kernels.RouterBackward(s, dt, probs, sel, dWeights, dLogits, tokens, e, k, c.NormTopKProb);
        Probe(s, "bwd_router");
        // 8. router dW: dWr = dLᵀ·X
        _tuner.Run(FusedGemm.RouterBackwardWeight, shapeClass, s, () => Candidates(GroupedGemmLayout.BackwardWeightTN, tokens, e, h),
            cfg => _gemm.BackwardWeightTN(s, dt, cfg, dLogits, x, dRouter, routerRows, e, h, RowSource.Identity, RowSource.Identity));
        Probe(s, "bwd_router_dw");
        // 9. router dX: dXr = dL·Wr
        _tuner.Run(FusedGemm.RouterBackwardData, shapeClass, s, () => Candidates(GroupedGemmLayout.BackwardDataNN, tokens, e, h),
            cfg => _gemm.BackwardDataNN(s, dt, cfg, dLogits, wr, dXRouter, routerRows, e, h, RowSource.Identity, RowTarget.Identity));
        Probe(s, "bwd_router_dx");
        // 10. dX[t] = dXr[t] + Σ_j dXp[t*k+j]
        _kernels.SumOverTopK(s, dt, dXpSlots, dXRouter, dX, tokens, k, h);
        Probe(s, "bwd_sum_over_topk");
    }

    // NOTE: rows/n/k are the GEMM's shape; the candidate list depends only on layout, dtype and card today, but a
    // shape-aware filter (e.g. dropping 128-row tiles for decode) would slot in here.
    private IReadOnlyList<GemmConfig> Candidates(GroupedGemmLayout layout, int rows, int n, int k)
    {
        _ = (rows, n, k);
        return GroupedGemm.Candidates(layout, DType, Context);
    }

    // ==== workspace =================================================================================================

    private FusedWorkspace EnsureForwardWorkspace(int tokens)
    {
        if (_forwardWorkspace is { } ws && ws.Layout.CapacityTokens >= tokens) return ws;
        int capacity = FusedWorkspaceLayout.ShapeClassTokens(tokens);
        var layout = FusedWorkspaceLayout.Forward(Config, DType, Options, capacity);
        // NOTE: the old arena may still be read by queued work on some stream; the driver's cuMemFree waits for
        // the device to finish using it, so disposing here is safe (and not inside a graph capture: see Reserve).
        _forwardWorkspace?.Dispose();
        _forwardWorkspace = null;
        _forwardWorkspace = new FusedWorkspace(Context, layout);
        _saved = default;

        _iota?.Dispose();
        _iota = null;
        var iota = new int[capacity + 1];
        for (int t = 0; t <= capacity; t++) iota[t] = t;
        _iota = new DeviceBuffer<int>(Context, iota.Length);
        _iota.CopyFromHost(iota);
        if (Options.FuseMulPost)
        {
            _ones?.Dispose();
            _ones = null;
            var ones = new float[(long)capacity * Config.TopK];
            Array.Fill(ones, 1f);
            _ones = DeviceTransfer.UploadNew(Context, ones, DType);
        }
        return _forwardWorkspace;
    }

    private FusedWorkspace EnsureBackwardWorkspace(int tokens)
    {
        if (_backwardWorkspace is { } ws && ws.Layout.CapacityTokens >= tokens) return ws;
        int capacity = FusedWorkspaceLayout.ShapeClassTokens(tokens);
        var layout = FusedWorkspaceLayout.Backward(Config, DType, Options, capacity);
        _backwardWorkspace?.Dispose();
        _backwardWorkspace = null;
        _backwardWorkspace = new FusedWorkspace(Context, layout);
        return _backwardWorkspace;
    }

    private HostIo EnsureHostIo(int tokens)
    {
        if (_hostIo is { } io && io.CapacityTokens >= tokens) return io;
        _hostIo?.Dispose();
        _hostIo = null;
        _hostIo = new HostIo(Context, Config, DType, FusedWorkspaceLayout.ShapeClassTokens(tokens));
        return _hostIo;
    }

    private CudaStream HostStream() => _hostStream ??= new CudaStream(Context);

    // ==== checks ====================================================================================================

    private void CheckContext(CudaContext context, string paramName)
    {
        if (!ReferenceEquals(context, Context) && context.Ordinal != Context.Ordinal)
            throw new ArgumentException($"{paramName} belongs to device {context.Ordinal}, the block to device {Context.Ordinal}.", paramName);
    }

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
        _ones?.Dispose();
        _hostStream?.Dispose();
        if (_ownsWeights) _weights.Dispose();
    }

    /// <summary>What the backward needs from the last forward: T and the caller's X / routing addresses.</summary>
    private readonly record struct SavedForward(int Tokens, DeviceRange X, DeviceRange Selected, DeviceRange Weights, bool Valid);

    // ==== host API staging ==========================================================================================

    /// <summary>Device staging buffers of the host API (capacity in tokens, grow-only).</summary>
    internal sealed class HostIo : IDisposable
    {
        public HostIo(CudaContext context, MoeConfig c, ScalarType dt, int capacity)
        {
            CapacityTokens = capacity;
            int s = dt.SizeOf();
            long th = (long)capacity * c.HiddenSize, tk = (long)capacity * c.TopK;
            X = new DeviceBuffer<byte>(context, th * s);
            Y = new DeviceBuffer<byte>(context, th * s);
            DY = new DeviceBuffer<byte>(context, th * s);
            DX = new DeviceBuffer<byte>(context, th * s);
            Selected = new DeviceBuffer<byte>(context, tk * 4);
            RoutingWeights = new DeviceBuffer<byte>(context, tk * s);
        }

        public int CapacityTokens { get; }
        public DeviceBuffer<byte> X { get; }              // [T,H] dtype
        public DeviceBuffer<byte> Y { get; }              // [T,H] dtype
        public DeviceBuffer<byte> DY { get; }             // [T,H] dtype
        public DeviceBuffer<byte> DX { get; }             // [T,H] dtype
        public DeviceBuffer<byte> Selected { get; }       // [T,k] i32
        public DeviceBuffer<byte> RoutingWeights { get; } // [T,k] dtype
        public HostGradients? Gradients { get; private set; }

        public HostGradients EnsureGradients(CudaContext context, MoeConfig c, ScalarType dt)
            => Gradients ??= new HostGradients(context, c, dt);

        public void Dispose()
        {
            X.Dispose();
            Y.Dispose();
            DY.Dispose();
            DX.Dispose();
            Selected.Dispose();
            RoutingWeights.Dispose();
            Gradients?.Dispose();
        }
    }

    /// <summary>Device weight-gradient buffers of the host API.</summary>
    internal sealed class HostGradients : IDisposable
    {
        public HostGradients(CudaContext context, MoeConfig c, ScalarType dt)
        {
            int s = dt.SizeOf();
            Router = new DeviceBuffer<byte>(context, c.RouterElements * s);
            GateUp = new DeviceBuffer<byte>(context, c.GateUpElements * s);
            Down = new DeviceBuffer<byte>(context, c.DownElements * s);
        }

        public DeviceBuffer<byte> Router { get; }  // [E,H] dtype
        public DeviceBuffer<byte> GateUp { get; }  // [E,2I,H] dtype
        public DeviceBuffer<byte> Down { get; }    // [E,H,I] dtype

        public void Poison(CudaStream s)
        {
            Router.FillBytes(0xFF, s);
            GateUp.FillBytes(0xFF, s);
            Down.FillBytes(0xFF, s);
        }

        public void Dispose()
        {
            Router.Dispose();
            GateUp.Dispose();
            Down.Dispose();
        }
    }

    internal FusedWorkspace? ForwardWorkspaceForTests => _forwardWorkspace;

    /// <summary>
    /// Diagnostics hook (benchmark kernel breakdown): when set, called on the stream after each step of the forward and
    /// backward launch sequences with the step's name, e.g. to record a CUDA event there. Null (the default) costs nothing.
    /// </summary>
    internal Action<CudaStream, string>? StepProbe { get; set; }

    private void Probe(CudaStream s, string step) => StepProbe?.Invoke(s, step);

    /// <summary>
    /// Synchronously reads the selected experts [T,k] the last forward used (its own top-k or the routing passed in),
    /// e.g. to count the experts hit. Synchronises the context.
    /// </summary>
    internal int[] ReadSelected(int tokens)
    {
        ThrowIfDisposed();
        if (!_saved.Valid || _saved.Tokens != tokens)
            throw new InvalidOperationException($"No forward of T={tokens} to read the routing of.");
        var selected = new int[tokens * Config.TopK];
        if (selected.Length == 0) return selected;
        if (_saved.Selected.Pointer != _forwardWorkspace!.Ptr(FusedBuffer.Selected))
            throw new InvalidOperationException("The last forward used caller-provided routing; read it from the caller's buffer.");
        Context.Synchronize();
        return DeviceTransfer.DownloadInt32(_forwardWorkspace.Arena, _forwardWorkspace.Offset(FusedBuffer.Selected), selected.Length);
    }
}
