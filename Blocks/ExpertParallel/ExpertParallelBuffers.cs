using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Blocks;

/// <summary>
/// The expert-parallel block's device and pinned buffers, grow-only: token-side buffers sized by a token capacity
/// (this rank's T rounded up to a power of two), expert-side buffers by a received-row capacity R (rounded likewise).
/// Legend: T this rank's tokens, TK = T*k, R rows this rank's experts receive, E_r local experts, N ranks.
/// </summary>
internal sealed class ExpertParallelBuffers(CudaContext context, MoeConfig config, ScalarType dtype, int ranks, int localExperts) : IDisposable
{
    private readonly int _es = dtype.SizeOf();

    // ---- token side (forward) -------------------------------------------------------------------------------------
    public DeviceBuffer<byte>? Logits;          // [T,E] dtype
    public DeviceBuffer<byte>? Probs;           // [T,E] f32
    public DeviceBuffer<byte>? Selected;        // [T,k] i32
    public DeviceBuffer<byte>? RoutingWeights;  // [T,k] dtype
    public DeviceBuffer<byte>? Gather;          // [TK] i32: expert-ordered row -> token slot
    public DeviceBuffer<byte>? Inverse;         // [TK] i32: token slot -> expert-ordered row
    public DeviceBuffer<byte>? SendRows;        // [TK,H] dtype, expert order: Xp out (forward), dXp back (backward)
    public DeviceBuffer<byte>? ExpertOut;       // [TK,H] dtype, expert order: U, the experts' rows back
    public DeviceBuffer<int>? Iota;             // [Tcap+1] i32: iota[t] = t; &iota[T] is m_sizes [1] of a one-group GEMM
    public RouterRowSplit? RouterSplit;         // m_sizes of the router dW's groups of rows (Tcap), as the fused block's
    // ---- token side (backward) ------------------------------------------------------------------------------------
    public DeviceBuffer<byte>? DExpertOut;      // [TK,H] dtype, expert order: dU
    public DeviceBuffer<byte>? DRoutingWeights; // [T,k] f32
    public DeviceBuffer<byte>? DXpSlots;        // [TK,H] dtype, token-slot order
    public DeviceBuffer<byte>? DLogits;         // [T,E] dtype
    public DeviceBuffer<byte>? DXRouter;        // [T,H] dtype
    public DeviceBuffer<byte>? RouterWeightPartials; // [G,E,H] f32: the router dW's row-chunk partials (null: nothing splits)
    // ---- counts (fixed size) --------------------------------------------------------------------------------------
    public readonly DeviceBuffer<int> MSizes = new(context, config.NumExperts);             // [E] i32
    public readonly DeviceBuffer<byte> RoutingCounts = new(context, MoeKernels.RoutingIndicesScratchBytes(config.NumExperts)); // [64,E] i32 scratch
    public readonly DeviceBuffer<int> ReceivedCounts = new(context, (long)ranks * localExperts); // [N,E_r] i32
    public readonly DeviceBuffer<int> LocalMSizes = new(context, localExperts);             // [E_r] i32
    public readonly PinnedHostBuffer HostMSizes = new(context, 4 * config.NumExperts);      // [E] i32
    public readonly PinnedHostBuffer HostReceivedCounts = new(context, 4 * ranks * localExperts); // [N,E_r] i32
    public PinnedHostBuffer? HostLocalTables;   // [E_r + 2 Rcap] i32: local m_sizes, local gather, local inverse
    // ---- expert side (forward) ------------------------------------------------------------------------------------
    public DeviceBuffer<int>? LocalGather;      // [R] i32: local expert-ordered row -> receive row
    public DeviceBuffer<int>? LocalInverse;     // [R] i32: receive row -> local expert-ordered row
    public DeviceBuffer<byte>? ReceivedRows;    // [R,H] dtype, receive order: X rows (kept for the backward's dW)
    public DeviceBuffer<byte>? FirstGemm;       // [R,2I] dtype, local expert order
    public DeviceBuffer<byte>? Intermediate;    // [R,I] dtype, local expert order
    public DeviceBuffer<byte>? ReturnRows;      // [R,H] dtype, receive order: expert outputs (forward), dXp (backward)
    public DeviceBuffer<byte>? LocalRows;       // [R,H] dtype, local expert order: G2 (forward), dG2 (backward)
    // ---- expert side (backward) -----------------------------------------------------------------------------------
    public DeviceBuffer<byte>? ReceivedGrad;    // [R,H] dtype, receive order: dU rows; then Xp in local expert order
    public DeviceBuffer<byte>? DIntermediate;   // [R,I] dtype
    public DeviceBuffer<byte>? DFirstGemm;      // [R,2I] dtype

    public int TokenCapacity { get; private set; }
    public int RowCapacity { get; private set; }
    private bool _tokenBackward, _rowBackward;

    /// <summary>True when <see cref="EnsureTokens"/> / <see cref="EnsureRows"/> would reallocate (the caller drains the
    /// stream first: freeing memory an NCCL kernel still waits on would block). T = 0 tokens or 0 received rows still
    /// need the buffers of one (a rank that routes or receives nothing still exchanges counts and uploads its tables).</summary>
    public bool TokensNeedGrowth(int tokens, bool backward) => Math.Max(1, tokens) > TokenCapacity || (backward && !_tokenBackward);

    public bool RowsNeedGrowth(int rows, bool backward) => Math.Max(1, rows) > RowCapacity || (backward && !_rowBackward);

    /// <summary>Token-side buffers for T tokens (and the backward's when asked).</summary>
    public void EnsureTokens(int tokens, bool backward)
    {
        if (!TokensNeedGrowth(tokens, backward)) return;
        int cap = Math.Max(TokenCapacity, BlockWorkspaceLayout.ShapeClassTokens(Math.Max(1, tokens)));
        long t = cap, tk = t * config.TopK, e = config.NumExperts, h = config.HiddenSize;
        if (cap != TokenCapacity)
        {
            Grow(ref Logits, t * e * _es);
            Grow(ref Probs, t * e * 4);
            Grow(ref Selected, tk * 4);
            Grow(ref RoutingWeights, tk * _es);
            Grow(ref Gather, tk * 4);
            Grow(ref Inverse, tk * 4);
            Grow(ref SendRows, tk * h * _es);
            Grow(ref ExpertOut, tk * h * _es);
            Iota?.Dispose();
            Iota = null;
            var iota = new int[cap + 1];
            for (int i = 0; i <= cap; i++) iota[i] = i;
            Iota = DeviceBuffer<int>.FromHost(context, iota);
            RouterSplit?.Dispose();
            RouterSplit = null;
            RouterSplit = new RouterRowSplit(context, cap);
            _tokenBackward = false;
        }
        TokenCapacity = cap;
        if (backward)
        {
            Grow(ref DExpertOut, tk * h * _es);
            Grow(ref DRoutingWeights, tk * 4);
            Grow(ref DXpSlots, tk * h * _es);
            Grow(ref DLogits, t * e * _es);
            Grow(ref DXRouter, t * h * _es);
            long partialBytes = RouterRowSplit.PartialsBytes(cap, dtype, (int)e, (int)h);
            if (partialBytes > 0) Grow(ref RouterWeightPartials, partialBytes);
            _tokenBackward = true;
        }
    }

    /// <summary>Expert-side buffers for R received rows (and the backward's when asked).</summary>
    public void EnsureRows(int rows, bool backward)
    {
        if (!RowsNeedGrowth(rows, backward)) return;
        int cap = Math.Max(RowCapacity, BlockWorkspaceLayout.ShapeClassTokens(Math.Max(1, rows)));
        long r = cap, h = config.HiddenSize, i = config.IntermediateSize;
        if (cap != RowCapacity)
        {
            LocalGather?.Dispose();
            LocalGather = null;
            LocalGather = new DeviceBuffer<int>(context, r);
            LocalInverse?.Dispose();
            LocalInverse = null;
            LocalInverse = new DeviceBuffer<int>(context, r);
            HostLocalTables?.Dispose();
            HostLocalTables = null;
            HostLocalTables = new PinnedHostBuffer(context, checked(4 * (localExperts + 2 * cap)));
            Grow(ref ReceivedRows, r * h * _es);
            Grow(ref FirstGemm, r * 2 * i * _es);
            Grow(ref Intermediate, r * i * _es);
            Grow(ref ReturnRows, r * h * _es);
            Grow(ref LocalRows, r * h * _es);
            _rowBackward = false;
        }
        RowCapacity = cap;
        if (backward)
        {
            Grow(ref ReceivedGrad, r * h * _es);
            Grow(ref DIntermediate, r * i * _es);
            Grow(ref DFirstGemm, r * 2 * i * _es);
            _rowBackward = true;
        }
    }

    private void Grow(ref DeviceBuffer<byte>? buffer, long bytes)
    {
        if (buffer is not null && buffer.SizeInBytes >= bytes) return;
        buffer?.Dispose();
        buffer = null;
        buffer = new DeviceBuffer<byte>(context, Math.Max(16, bytes));
    }

    public void Dispose()
    {
        foreach (IDisposable? d in (IDisposable?[])[Logits, Probs, Selected, RoutingWeights, Gather, Inverse, SendRows, ExpertOut, Iota,
                     RouterSplit, DExpertOut, DRoutingWeights, DXpSlots, DLogits, DXRouter, RouterWeightPartials, MSizes, RoutingCounts, ReceivedCounts, LocalMSizes, HostMSizes,
                     HostReceivedCounts, HostLocalTables, LocalGather, LocalInverse, ReceivedRows, FirstGemm, Intermediate, ReturnRows, LocalRows,
                     ReceivedGrad, DIntermediate, DFirstGemm])
            d?.Dispose();
    }
}
