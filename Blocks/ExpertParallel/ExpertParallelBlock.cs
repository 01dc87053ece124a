using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Blocks;

/// <summary>
/// One rank of a Qwen3-MoE expert layer split over N GPUs by experts (expert parallelism over NCCL): this rank holds
/// the replicated router and experts <c>[FirstExpert, FirstExpert + E_r)</c> (<see cref="ExpertPartition"/>), takes
/// its own T tokens in and gives their outputs back. Every rank calls each Forward/Backward together (one process per
/// GPU, or <see cref="ExpertParallelGroup"/> driving all GPUs of a process).
/// </summary>
/// <remarks>
/// <para>Legend: T this rank's tokens, TK = T*k, R rows this rank's experts receive, E_r its experts, N ranks.</para>
/// <para><b>Forward</b> (this rank's stream): router logits, softmax/top-k, routing indices (the fused block's kernels:
/// <c>m_sizes [E]</c>, <c>gather</c>, <c>inverse [TK]</c>) → count exchange (grouped send/recv of each destination's
/// m_sizes slice; the counts come to the host: <b>the block's one host synchronisation</b>, because NCCL takes message
/// sizes from the host) → <see cref="ExchangePlan"/> → <c>Xp [TK,H]</c> gathered in expert order (rows of each
/// destination contiguous) → token exchange (grouped send/recv; source-major receive rows <c>[R,H]</c>) → the fused
/// block's grouped GEMM calls on the local experts (GEMM1 reading rows through the plan's local gather, SwiGLU, GEMM2
/// in local expert order, copied back to receive order) → results exchanged back along the same slices into <c>U [TK,H]</c> (expert
/// order) → combine <c>Y[t] = Σ_j w[t,j]·U[inverse[t*k+j]]</c> in j order (deterministic).</para>
/// <para><b>Backward</b> in reverse: combine backward (<c>dU</c>, <c>dw</c>) → dU rows to the experts' ranks →
/// GEMM2 dX and dW, SwiGLU backward, GEMM1 dX (scattered to receive order) and dW on the local experts → dXp rows back
/// → router backward and its GEMMs → <c>dX</c>; the router gradient <c>[E,H]</c> all-reduced (sum) over ranks.</para>
/// <para>With N = 1 every step is the fused block's own (same kernels, same row orders, same configs), so outputs and
/// gradients are bitwise those of <see cref="Qwen3MoeFusedBlock"/> on its grouped path (T &gt; 8 or Decode = Off).</para>
/// <para><b>Failures</b>: every exchange is polled against <see cref="ExpertParallelOptions.ExchangeTimeout"/>; a failed
/// or missing rank makes the others abort their communicators and throw, never hang. After that the block is unusable.</para>
/// <para>Not graph capturable (the count exchange synchronises). Not thread-safe: one caller at a time.</para>
/// </remarks>
public sealed partial class ExpertParallelBlock : IMoeDeviceBlock
{
    private readonly NcclCommunicator _comm;
    private readonly ExchangePlan _plan;
    private readonly GemmTuner _tuner;
    private readonly MoeKernels _kernels;
    private readonly GroupedGemm _gemm;
    private readonly ExpertParallelBuffers _buffers;
    private readonly DeviceBuffer<byte> _router;   // [E,H] dtype, replicated
    private readonly DeviceBuffer<byte> _gateUp;   // [E_r,2I,H] dtype, this rank's experts
    private readonly DeviceBuffer<byte> _down;     // [E_r,H,I] dtype, this rank's experts
    private readonly CudaEvent _countsReady, _tablesUploaded, _drained;
    private readonly BlockEntryGuard _entry = new();
    private SavedForward _saved;
    private bool _tablesPending, _disposed;

    /// <summary>
    /// Rank <see cref="NcclCommunicator.Rank"/> of <paramref name="communicator"/>'s N: uploads the router and this
    /// rank's experts of <paramref name="weights"/> (the whole layer's host weights) in <paramref name="dtype"/>. The
    /// communicator stays the caller's (dispose it after the block).
    /// </summary>
    /// <exception cref="ArgumentException">Options the exchange cannot honour, or more ranks than experts.</exception>
    public ExpertParallelBlock(NcclCommunicator communicator, MoeWeights weights, ScalarType dtype, ExpertParallelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(communicator);
        ArgumentNullException.ThrowIfNull(weights);
        options ??= ExpertParallelOptions.Default;
        ExpertParallelChecks.Options(options, nameof(options));
        MoeConfig c = weights.Config.Validate();
        ExpertPartition partition = ExpertParallelChecks.Partition(c, communicator.Size, nameof(communicator));
        _comm = communicator;
        Options = options;
        _plan = new ExchangePlan(partition, communicator.Rank);
        Config = c;
        DType = dtype;
        CudaContext ctx = communicator.Context;
        int first = _plan.FirstLocalExpert, el = _plan.LocalExperts;
        long gateUpPerExpert = 2L * c.IntermediateSize * c.HiddenSize, downPerExpert = (long)c.HiddenSize * c.IntermediateSize;
        var made = new List<IDisposable>();
        try
        {
            _router = Track(made, DeviceTransfer.UploadNew(ctx, weights.Gate, dtype));
            _gateUp = Track(made, DeviceTransfer.UploadNew(ctx, weights.GateUpProj.AsSpan().Slice(checked((int)(first * gateUpPerExpert)), checked((int)(el * gateUpPerExpert))), dtype));
            _down = Track(made, DeviceTransfer.UploadNew(ctx, weights.DownProj.AsSpan().Slice(checked((int)(first * downPerExpert)), checked((int)(el * downPerExpert))), dtype));
            _buffers = Track(made, new ExpertParallelBuffers(ctx, c, dtype, partition.Ranks, el));
            _countsReady = Track(made, new CudaEvent(ctx));
            _tablesUploaded = Track(made, new CudaEvent(ctx));
            _drained = Track(made, new CudaEvent(ctx));
            _tuner = new GemmTuner(options.Kernels);
            _kernels = MoeKernels.For(ctx);
            _gemm = GroupedGemm.For(ctx);
        }
        catch
        {
            foreach (IDisposable d in made) d.Dispose();
            throw;
        }
    }

    private static T Track<T>(List<IDisposable> made, T item) where T : IDisposable
    {
        made.Add(item);
        return item;
    }

    /// <summary>"expert-parallel" (the benchmark's row name).</summary>
    public string Name => "expert-parallel";

    public CudaContext Context => _comm.Context;

    /// <summary>The whole layer's config (E counts every rank's experts).</summary>
    public MoeConfig Config { get; }

    public ScalarType DType { get; }

    public ExpertParallelOptions Options { get; }

    /// <summary>This rank's communicator.</summary>
    public NcclCommunicator Communicator => _comm;

    /// <summary>Which rank holds which experts.</summary>
    public ExpertPartition Partition => _plan.Partition;

    /// <summary>This rank.</summary>
    public int Rank => _plan.Rank;

    /// <summary>E_r: experts on this rank.</summary>
    public int LocalExperts => _plan.LocalExperts;

    /// <summary>The global id of this rank's first expert.</summary>
    public int FirstLocalExpert => _plan.FirstLocalExpert;

    /// <summary>The last forward's exchange plan (counts, offsets, local gather); <see cref="ExchangePlan.IsBuilt"/>
    /// false before the first forward.</summary>
    public ExchangePlan LastPlan => _plan;

    /// <summary>False: the count exchange synchronises the host once per forward.</summary>
    public bool IsGraphCapturable => false;

    /// <summary>Local experts that received a row in the last forward (from the host plan; no synchronisation).</summary>
    public int CountExpertsHit()
    {
        ThrowIfDisposed();
        if (!_plan.IsBuilt) throw new InvalidOperationException("No forward yet.");
        int hit = 0;
        foreach (int rows in _plan.LocalExpertRows) hit += rows > 0 ? 1 : 0;
        return hit;
    }

    /// <summary>Allocates the token-side buffers for T tokens and the expert side for T·k received rows. Synchronous.</summary>
    public void Reserve(int tokens, bool backward = false)
    {
        ThrowIfDisposed();
        using BlockEntryGuard.Scope entry = _entry.Enter(this);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tokens);
        MoeLimits.CheckDeviceTokens(Config, tokens, nameof(tokens));
        _buffers.EnsureTokens(tokens, backward);
        _buffers.EnsureRows(tokens * Config.TopK, backward);
    }

    /// <summary>
    /// Forward of this rank's T tokens: <c>Y [T,H] = MoE(X [T,H])</c> on <paramref name="stream"/>, exchanging rows with
    /// every other rank (which must call Forward too, T = 0 included). With <paramref name="routing"/> its top-k replaces
    /// the router's. Returns once the exchanges are enqueued; waits on the host for the count exchange.
    /// </summary>
    /// <exception cref="ArgumentException">Wrong element type, a buffer too short, X and Y aliased, another context.</exception>
    /// <exception cref="NcclException">An exchange failed or timed out (the communicator is aborted).</exception>
    /// <exception cref="OperationCanceledException"><see cref="ExpertParallelOptions.Cancellation"/> fired.</exception>
    public void Forward<TElem>(CudaStream stream, DeviceBuffer<TElem> x /*[T,H]*/, DeviceBuffer<TElem> y /*[T,H]*/, int tokens,
        DeviceRouting<TElem>? routing = null) where TElem : unmanaged
    {
        ThrowIfDisposed();
        using BlockEntryGuard.Scope entry = _entry.Enter(this);
        BlockChecks.Forward(Context, Config, DType, stream, x, y, tokens, routing);
        _saved = default;
        ForwardCore(stream, tokens == 0 ? DeviceRange.Null : x.AsRange(), tokens == 0 ? DeviceRange.Null : y.AsRange(), tokens,
            routing?.Selected.AsRange() ?? DeviceRange.Null, routing?.Weights.AsRange() ?? DeviceRange.Null);
    }

    /// <summary>
    /// Backward of the last forward on every rank together: the five gradients, overwritten: dX [T,H] of this rank's
    /// tokens, the router's [E,H] (all-reduced: equal on every rank), and this rank's experts' gate_up [E_r,2I,H] and
    /// down [E_r,H,I].
    /// </summary>
    /// <exception cref="InvalidOperationException">No forward before.</exception>
    /// <exception cref="ArgumentException">Wrong element type, a buffer too short, another context.</exception>
    /// <exception cref="NcclException">An exchange failed or timed out.</exception>
    public void Backward<TElem>(CudaStream stream, DeviceBuffer<TElem> dY /*[T,H]*/, DeviceGradients<TElem> gradients) where TElem : unmanaged
    {
        ThrowIfDisposed();
        using BlockEntryGuard.Scope entry = _entry.Enter(this);
        BlockChecks.BackwardArguments(stream, dY, gradients);
        BlockChecks.ElementType(DType, typeof(TElem), nameof(dY));
        if (!_saved.Valid)
            throw new InvalidOperationException("Backward needs a preceding Forward on this block (on every rank).");
        int tokens = _saved.Tokens;
        ExpertParallelChecks.BackwardShapes(Config, LocalExperts, tokens, dY.Length, gradients.HiddenStates.Length, gradients.Gate.Length,
            gradients.GateUpProj.Length, gradients.DownProj.Length);
        BlockChecks.BackwardContexts(Context, stream, dY, gradients);
        BackwardCore(stream, tokens == 0 ? DeviceRange.Null : dY.AsRange(), tokens == 0 ? DeviceRange.Null : gradients.HiddenStates.AsRange(),
            gradients.Gate.AsRange(), gradients.GateUpProj.AsRange(), gradients.DownProj.AsRange());
    }

    /// <summary>
    /// Waits on the host until <paramref name="stream"/>'s work so far (this rank's exchanges included) is done, polling
    /// the communicator: a peer that failed surfaces as an <see cref="NcclException"/> within the exchange timeout
    /// (where a plain stream synchronise would wait for ever).
    /// </summary>
    public void Synchronize(CudaStream stream)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(stream);
        Context.EnsureSameContext(stream.Context, nameof(stream), "the block");
        Drain(stream, "the rank's work");
    }

    private void Drain(CudaStream s, string what)
    {
        _drained.Record(s);
        _comm.WaitFor(_drained, Options.ExchangeTimeout, Options.Cancellation, what);
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Frees the block's buffers and weights (not the communicator). Never throws.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _buffers.Dispose();
        _router.Dispose();
        _gateUp.Dispose();
        _down.Dispose();
        _countsReady.Dispose();
        _tablesUploaded.Dispose();
        _drained.Dispose();
    }

    /// <summary>What the backward needs from the last forward: T and the caller's X / routing addresses.</summary>
    private readonly record struct SavedForward(int Tokens, DeviceRange X, DeviceRange Selected, DeviceRange Weights, bool Valid);
}
