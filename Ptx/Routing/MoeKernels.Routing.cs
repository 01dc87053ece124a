using MoeNative.Interop;
using static MoeNative.Interop.DeviceRangeChecks;

namespace MoeNative.Ptx;

// Routing kernels: router softmax/top-k forward and backward, router logits GEMV, routing indices.
internal sealed partial class MoeKernels
{
    /// <summary>Largest E the router kernels handle (8 experts per lane of one warp).</summary>
    public const int RouterMaxExperts = 256;

    /// <summary>Largest E the routing-indices histogram handles (E*4 bytes of shared memory, within 48 KiB).</summary>
    public const int RoutingMaxExperts = 12288;

    private const int RouterBlock = 256;  // 8 warps = 8 tokens per CTA
    private const int RoutingChunkBlock = 256; // count and scatter: 8 warps per chunk
    private const int RoutingScanBlock = 1024;

    private readonly PtxKernel<RouterSoftmaxTopKArgs>?[] _routerForward = new PtxKernel<RouterSoftmaxTopKArgs>?[3];
    private readonly PtxKernel<RouterSoftmaxTopKBackwardArgs>?[] _routerBackward = new PtxKernel<RouterSoftmaxTopKBackwardArgs>?[3];
    private readonly PtxKernel<RouterDwReduceArgs>?[] _routerDwReduce = new PtxKernel<RouterDwReduceArgs>?[3];
    private readonly PtxKernel<RouterLogitsGemvArgs>?[] _routerLogitsGemv = new PtxKernel<RouterLogitsGemvArgs>?[3];
    private readonly PtxKernel<RoutingDecodeArgs>?[] _routingDecode = new PtxKernel<RoutingDecodeArgs>?[6]; // [programmatic * 3 + dtype slot]
    private readonly PtxKernel<RoutingCountArgs>?[] _routingCount = new PtxKernel<RoutingCountArgs>?[1];
    private readonly PtxKernel<RoutingScanArgs>?[] _routingScan = new PtxKernel<RoutingScanArgs>?[1];
    private readonly PtxKernel<RoutingScatterArgs>?[] _routingScatter = new PtxKernel<RoutingScatterArgs>?[1];

    // ============================================================================================== router
    /// <summary>
    /// Router forward, one warp per token: P = softmax(fp32(logits)); sel = top-k of P descending (ties -> lower expert id);
    /// w = normTopK ? v / sum(v) : v, rounded to <paramref name="dtype"/>.
    /// </summary>
    public void RouterForward(CudaStream stream, ScalarType dtype,
        DeviceRange logits,   // [T,E] dtype
        DeviceRange probs,    // [T,E] f32 out
        DeviceRange selected, // [T,k] i32 out
        DeviceRange weights,  // [T,k] dtype out
        int tokens, int experts, int topK, bool normTopK)
    {
        CheckStream(stream);
        int es = ElementSize(dtype);
        CheckRouterDims(tokens, experts, topK);
        long te = (long)tokens * experts, tk = (long)tokens * topK;
        Need(logits, te * es, nameof(logits), $"[T={tokens},E={experts}] {dtype}");
        Need(probs, te * 4, nameof(probs), $"[T={tokens},E={experts}] f32");
        Need(selected, tk * 4, nameof(selected), $"[T={tokens},k={topK}] i32");
        Need(weights, tk * es, nameof(weights), $"[T={tokens},k={topK}] {dtype}");
        if (tokens == 0) return;
        var args = new RouterSoftmaxTopKArgs
        {
            Logits = logits.Pointer, Probs = probs.Pointer, Selected = selected.Pointer, Weights = weights.Pointer,
            Tokens = tokens, Experts = experts, TopK = topK, NormTopK = normTopK ? 1 : 0,
        };
        Kernel(_routerForward, dtype, MoeKernelModules.Router, MoeKernelModules.RouterForwardEntry)
            .Launch(stream, new Dim3(CeilDiv(tokens, RouterBlock / 32)), new Dim3(RouterBlock), 0, in args);
    }

    /// <summary>
    /// Router backward, one warp per token (docs/DESIGN.md): S = sum_j v_j, v_j = P[t,sel_j];
    /// dv_j = normTopK ? (dw_j - sum_i dw_i v_i / S) / S : dw_j; dP[sel_j] = dv_j; dL = P * (dP - sum_e P_e dP_e).
    /// </summary>
    public void RouterBackward(CudaStream stream, ScalarType dtype,
        DeviceRange probs,    // [T,E] f32 (forward softmax)
        DeviceRange selected, // [T,k] i32
        DeviceRange dWeights, // [T,k] f32
        DeviceRange dLogits,  // [T,E] dtype out (overwritten)
        int tokens, int experts, int topK, bool normTopK)
    {
        CheckStream(stream);
        int es = ElementSize(dtype);
        CheckRouterDims(tokens, experts, topK);
        long te = (long)tokens * experts, tk = (long)tokens * topK;
        Need(probs, te * 4, nameof(probs), $"[T={tokens},E={experts}] f32");
        Need(selected, tk * 4, nameof(selected), $"[T={tokens},k={topK}] i32");
        Need(dWeights, tk * 4, nameof(dWeights), $"[T={tokens},k={topK}] f32");
        Need(dLogits, te * es, nameof(dLogits), $"[T={tokens},E={experts}] {dtype}");
        if (tokens == 0) return;
        var args = new RouterSoftmaxTopKBackwardArgs
        {
            Probs = probs.Pointer, Selected = selected.Pointer, DWeights = dWeights.Pointer, DLogits = dLogits.Pointer,
            Tokens = tokens, Experts = experts, TopK = topK, NormTopK = normTopK ? 1 : 0,
        };
        Kernel(_routerBackward, dtype, MoeKernelModules.Router, MoeKernelModules.RouterBackwardEntry)
            .Launch(stream, new Dim3(CeilDiv(tokens, RouterBlock / 32)), new Dim3(RouterBlock), 0, in args);
    }

    /// <summary>
    /// Router weight gradient, second pass of a split over token rows: <c>dWr[e, h] = Σ_s partial[s, e, h]</c>, f32 sums in
    /// s order (deterministic), one rounding to <paramref name="dtype"/>. The partials are the f32 output of the grouped
    /// TN GEMM with one group per chunk of rows (<see cref="GroupedGemm.BackwardWeightTNFloat32"/>,
    /// <c>Blocks/Common/RouterRowSplit.cs</c>), so nothing is rounded before the sum.
    /// </summary>
    public void RouterWeightGradReduce(CudaStream stream, ScalarType dtype,
        DeviceRange partials, // [S,E,H] f32
        DeviceRange dRouter,  // [E,H] dtype out
        int splits, int experts, int hidden)
    {
        CheckStream(stream);
        int es = ElementSize(dtype);
        if (splits < 1) throw new ArgumentOutOfRangeException(nameof(splits), splits, "S must be >= 1.");
        if (experts < 1) throw new ArgumentOutOfRangeException(nameof(experts), experts, "E must be >= 1.");
        NonNegative(hidden, nameof(hidden));
        long n = (long)experts * hidden;
        if (n > int.MaxValue - 1024) throw new ArgumentOutOfRangeException(nameof(hidden), hidden, $"E*H = {n} is too large for this kernel's 32-bit element index.");
        Need(partials, splits * n * 4, nameof(partials), $"[S={splits},E={experts},H={hidden}] f32");
        if (partials.Pointer % 4 != 0) throw new ArgumentException($"partials must be 4-byte aligned (f32); got 0x{partials.Pointer:X}.", nameof(partials));
        if (dRouter.Pointer % (ulong)es != 0) throw new ArgumentException($"dRouter must be {es}-byte aligned ({dtype}); got 0x{dRouter.Pointer:X}.", nameof(dRouter));
        Need(dRouter, n * es, nameof(dRouter), $"[E={experts},H={hidden}] {dtype}");
        if (partials.Pointer < dRouter.Pointer + (ulong)(n * es) && dRouter.Pointer < partials.Pointer + (ulong)(splits * n * 4))
            throw new ArgumentException("dRouter must not overlap the partials.", nameof(dRouter));
        if (n == 0) return;
        int count = (int)n;
        var args = new RouterDwReduceArgs
        {
            Partials = partials.Pointer, Output = dRouter.Pointer, Count = count, Splits = splits,
            Vectorised = count % 8 == 0 && partials.Pointer % 16 == 0 && dRouter.Pointer % 16 == 0 ? 1 : 0,
        };
        Kernel(_routerDwReduce, dtype, MoeKernelModules.RouterDwReduce, MoeKernelModules.RouterDwReduceEntry)
            .Launch(stream, new Dim3(CeilDiv(count, 1024)), new Dim3(128), 0, in args);
    }

    /// <summary>Largest T for which <see cref="CanRouterLogitsGemv"/> says yes: each warp re-reads X (T x H) once per expert
    /// pair, which stays cheaper than the tiled GEMM's serial k-walk up to a few hundred tokens.</summary>
    public const int RouterLogitsGemvMaxTokens = 256;

    /// <summary>True when <see cref="RouterLogitsGemv"/> takes this call: 16-bit dtype, T in [1, <see cref="RouterLogitsGemvMaxTokens"/>],
    /// H a multiple of 8, every pointer 16-byte aligned.</summary>
    public static bool CanRouterLogitsGemv(ScalarType dtype, int tokens, int hidden, DeviceRange x, DeviceRange wr, DeviceRange logits) =>
        dtype is ScalarType.BFloat16 or ScalarType.Float16 && tokens is > 0 and <= RouterLogitsGemvMaxTokens && hidden > 0
        && hidden % 8 == 0 && x.Pointer % 16 == 0 && wr.Pointer % 16 == 0 && logits.Pointer % 16 == 0;

    /// <summary>
    /// Router logits for small T: <c>L[t, e] = Σ_h X[t, h]·Wr[e, h]</c>, fp32 accumulation (per lane in chunk order, then
    /// a fixed butterfly and the four warps in order: deterministic), one rounding to <paramref name="dtype"/>.
    /// Grid (⌈E/2⌉, ⌈T/8⌉) x 128 threads: two experts x eight tokens per CTA.
    /// Only where <see cref="CanRouterLogitsGemv"/> holds (the tiled grouped GEMM does the rest).
    /// </summary>
    public void RouterLogitsGemv(CudaStream stream, ScalarType dtype,
        DeviceRange x,       // [T,H] dtype
        DeviceRange wr,      // [E,H] dtype
        DeviceRange logits,  // [T,E] dtype out
        int tokens, int experts, int hidden)
    {
        CheckStream(stream);
        if (dtype is not (ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "The router GEMV takes BFloat16 or Float16.");
        NonNegative(tokens, nameof(tokens));
        if (experts < 1) throw new ArgumentOutOfRangeException(nameof(experts), experts, "E must be >= 1.");
        if (hidden < 8 || hidden % 8 != 0) throw new ArgumentOutOfRangeException(nameof(hidden), hidden, "H must be a positive multiple of 8.");
        Need(x, (long)tokens * hidden * 2, nameof(x), $"[T={tokens},H={hidden}] {dtype}");
        Need(wr, (long)experts * hidden * 2, nameof(wr), $"[E={experts},H={hidden}] {dtype}");
        Need(logits, (long)tokens * experts * 2, nameof(logits), $"[T={tokens},E={experts}] {dtype}");
        Aligned(x, 16, nameof(x));
        Aligned(wr, 16, nameof(wr));
        Aligned(logits, 16, nameof(logits));
        if (tokens == 0) return;
        var args = new RouterLogitsGemvArgs
        {
            X = x.Pointer, Wr = wr.Pointer, Logits = logits.Pointer, Tokens = tokens, Experts = experts, Hidden = hidden,
        };
        Kernel(_routerLogitsGemv, dtype, _ => MoeKernelModules.RouterLogitsGemv(), MoeKernelModules.RouterLogitsGemvEntry)
            .Launch(stream, new Dim3(CeilDiv(experts, 2), CeilDiv(tokens, RouterGemvTokensPerRow)), new Dim3(128), 0, in args);
    }

    // ============================================================================================== routing indices
    /// <summary>Most chunks <see cref="RoutingIndices"/> splits the slots into (its scan reads C x E counts).</summary>
    public const int RoutingMaxChunks = 64;

    /// <summary>Fewest slots per chunk (four 256-slot steps: a chunk's scatter CTA has work enough for its setup).</summary>
    public const int RoutingMinChunkSlots = 1024;

    /// <summary>Slots per chunk S (a multiple of 256) and chunk count C = ceil(TK / S) >= 1 for TK slots: C up to
    /// <see cref="RoutingMaxChunks"/>, each at least <see cref="RoutingMinChunkSlots"/> slots.</summary>
    public static (int ChunkSlots, int Chunks) RoutingChunking(int tokenSlots)
    {
        NonNegative(tokenSlots, nameof(tokenSlots));
        long perChunk = ((long)tokenSlots + RoutingMaxChunks - 1) / RoutingMaxChunks;
        int chunkSlots = (int)Math.Max(RoutingMinChunkSlots, (perChunk + 255) / 256 * 256);
        int chunks = (int)Math.Max(1, ((long)tokenSlots + chunkSlots - 1) / chunkSlots);
        return (chunkSlots, chunks);
    }

    /// <summary>Bytes of the <c>counts</c> scratch <see cref="RoutingIndices"/> needs for any TK: [<see cref="RoutingMaxChunks"/>, E] i32.</summary>
    public static long RoutingIndicesScratchBytes(int experts)
    {
        if (experts < 1) throw new ArgumentOutOfRangeException(nameof(experts), experts, "E must be >= 1.");
        return (long)RoutingMaxChunks * experts * 4;
    }

    /// <summary>
    /// m_sizes = histogram of sel; gather = stable argsort of sel (rows of one expert in increasing p); inverse[gather[r]] = r.
    /// Three launches over chunks of slots (<see cref="RoutingChunking"/>): per-chunk counts, one scan (m_sizes and
    /// each chunk's first row per expert, in a fixed order), per-chunk stable scatter. Deterministic, no host sync.
    /// Ids must be in [0, E): an out-of-range id is not counted and leaves its gather/inverse entries unwritten.
    /// TK = 0 still writes m_sizes = 0.
    /// </summary>
    public void RoutingIndices(CudaStream stream,
        DeviceRange selected, // [TK] i32 (sel [T,k] flattened)
        DeviceRange mSizes,   // [E] i32 out
        DeviceRange gather,   // [TK] i32 out
        DeviceRange inverse,  // [TK] i32 out
        DeviceRange counts,   // [C,E] i32 scratch (RoutingIndicesScratchBytes)
        int tokenSlots, int experts)
    {
        CheckStream(stream);
        NonNegative(tokenSlots, nameof(tokenSlots));
        if (experts < 1 || experts > RoutingMaxExperts)
            throw new ArgumentOutOfRangeException(nameof(experts), experts, $"E must be in [1, {RoutingMaxExperts}].");
        if (tokenSlots > int.MaxValue - 4096)
            throw new ArgumentOutOfRangeException(nameof(tokenSlots), tokenSlots, "TK too large for 32-bit slot indices.");
        (int chunkSlots, int chunks) = RoutingChunking(tokenSlots);
        Need(selected, tokenSlots * 4L, nameof(selected), $"[TK={tokenSlots}] i32");
        Need(mSizes, experts * 4L, nameof(mSizes), $"[E={experts}] i32");
        Need(gather, tokenSlots * 4L, nameof(gather), $"[TK={tokenSlots}] i32");
        Need(inverse, tokenSlots * 4L, nameof(inverse), $"[TK={tokenSlots}] i32");
        Need(counts, (long)chunks * experts * 4, nameof(counts), $"[C={chunks},E={experts}] i32 scratch");
        var count = new RoutingCountArgs { Selected = selected.Pointer, Counts = counts.Pointer, TokenSlots = tokenSlots, Experts = experts, ChunkSlots = chunkSlots };
        Kernel(_routingCount, 0, 0, static _ => MoeKernelModules.RoutingIndices(), static _ => MoeKernelModules.RoutingCountEntry)
            .Launch(stream, new Dim3((uint)chunks), new Dim3(RoutingChunkBlock), experts * 4, in count);
        var scan = new RoutingScanArgs { Counts = counts.Pointer, MSizes = mSizes.Pointer, Chunks = chunks, Experts = experts };
        Kernel(_routingScan, 0, 0, static _ => MoeKernelModules.RoutingIndices(), static _ => MoeKernelModules.RoutingScanEntry)
            .Launch(stream, new Dim3(1), new Dim3(RoutingScanBlock), 0, in scan);
        if (tokenSlots == 0) return;
        var scatter = new RoutingScatterArgs
        {
            Selected = selected.Pointer, Bases = counts.Pointer, Gather = gather.Pointer, Inverse = inverse.Pointer,
            TokenSlots = tokenSlots, Experts = experts, ChunkSlots = chunkSlots,
        };
        Kernel(_routingScatter, 0, 0, static _ => MoeKernelModules.RoutingIndices(), static _ => MoeKernelModules.RoutingScatterEntry)
            .Launch(stream, new Dim3((uint)chunks), new Dim3(RoutingChunkBlock), experts * 4, in scatter);
    }

    // ============================================================================================== one-launch decode routing
    /// <summary>Largest T <see cref="RoutingDecode"/> takes: its grid is the GEMV's (a row of CTAs per
    /// <see cref="RouterGemvTokensPerRow"/> tokens), and each row's last CTA runs its tokens' softmax/top-k on four warps,
    /// two tokens each, which stays short against the four-launch routing only for the decode steps' few rows.</summary>
    public const int RoutingDecodeMaxTokens = 16;

    /// <summary>Tokens of one row of router-GEMV CTAs (grid.y of <c>moe_router_logits_gemv</c> and
    /// <c>moe_routing_decode</c>): the GEMV body's eight accumulators per expert.</summary>
    public const int RouterGemvTokensPerRow = 8;

    /// <summary>The u32 ticket counters <see cref="RoutingDecode"/> takes at T = <paramref name="tokens"/>: one per row of
    /// GEMV CTAs, and one more across the rows when there are several.</summary>
    public static int RoutingDecodeCounters(int tokens)
    {
        int rows = (int)Math.Max(1, CeilDiv(tokens, RouterGemvTokensPerRow));
        return rows > 1 ? rows + 1 : 1;
    }

    /// <summary>True when <see cref="RoutingDecode"/> takes this call: <see cref="CanRouterLogitsGemv"/>, T &lt;= 16 and
    /// 1 &lt;= E &lt;= <see cref="RouterMaxExperts"/>.</summary>
    public static bool CanRoutingDecode(ScalarType dtype, int tokens, int experts, int hidden, DeviceRange x, DeviceRange wr, DeviceRange logits) =>
        tokens <= RoutingDecodeMaxTokens && experts is >= 1 and <= RouterMaxExperts && CanRouterLogitsGemv(dtype, tokens, hidden, x, wr, logits);

    /// <summary>
    /// The routing of a decode step in one launch: the outputs of <see cref="RouterLogitsGemv"/>, <see cref="RouterForward"/>
    /// and <see cref="RoutingIndices"/> bit for bit (logits, probs, sel, w, m_sizes, gather, inverse), with no host sync.
    /// <paramref name="counter"/> [<see cref="RoutingDecodeCounters"/>(T)] u32 must be 0 before the launch and is left 0 after it (one per stream: two
    /// launches in flight must not share it). Only where <see cref="CanRoutingDecode"/> holds. With
    /// <paramref name="programmatic"/> (the sm_90 module) it lets a programmatically launched decode kernel after it
    /// start at once (that kernel waits for this grid on the device); itself it is launched plainly. With a route
    /// <paramref name="record"/> (all zero; <see cref="CanRouteRecord"/>: T = 1, k &lt;= 32) it also publishes the k
    /// selected experts there right after its top-k, for the decode launches after it given the same record.
    /// </summary>
    public void RoutingDecode(CudaStream stream, ScalarType dtype,
        DeviceRange x,        // [T,H] dtype
        DeviceRange wr,       // [E,H] dtype
        DeviceRange logits,   // [T,E] dtype out
        DeviceRange probs,    // [T,E] f32 out
        DeviceRange selected, // [T,k] i32 out
        DeviceRange weights,  // [T,k] dtype out
        DeviceRange mSizes,   // [E] i32 out
        DeviceRange gather,   // [TK] i32 out
        DeviceRange inverse,  // [TK] i32 out
        DeviceRange counter,  // [RoutingDecodeCounters(T)] u32, zero
        int tokens, int experts, int topK, int hidden, bool normTopK, bool programmatic = false,
        DeviceRange record = default) // route record [DecodeRouteRecordBytes], or Null
    {
        CheckStream(stream);
        CheckRouterDims(tokens, experts, topK);
        CheckProgrammatic(programmatic);
        CheckRouteRecord(record, tokens, topK);
        if (!CanRoutingDecode(dtype, tokens, experts, hidden, x, wr, logits))
            throw new ArgumentException(
                $"The one-launch decode routing needs a bf16/fp16 dtype, 1 <= T <= {RoutingDecodeMaxTokens}, E <= {RouterMaxExperts}, " +
                $"H a positive multiple of 8 and X, Wr, L 16-byte aligned; got {dtype}, T={tokens}, E={experts}, H={hidden}.", nameof(tokens));
        const int es = 2;
        long te = (long)tokens * experts, tk = (long)tokens * topK;
        Need(x, (long)tokens * hidden * es, nameof(x), $"[T={tokens},H={hidden}] {dtype}");
        Need(wr, (long)experts * hidden * es, nameof(wr), $"[E={experts},H={hidden}] {dtype}");
        Need(logits, te * es, nameof(logits), $"[T={tokens},E={experts}] {dtype}");
        Need(probs, te * 4, nameof(probs), $"[T={tokens},E={experts}] f32");
        Need(selected, tk * 4, nameof(selected), $"[T={tokens},k={topK}] i32");
        Need(weights, tk * es, nameof(weights), $"[T={tokens},k={topK}] {dtype}");
        Need(mSizes, experts * 4L, nameof(mSizes), $"[E={experts}] i32");
        Need(gather, tk * 4, nameof(gather), $"[TK={tk}] i32");
        Need(inverse, tk * 4, nameof(inverse), $"[TK={tk}] i32");
        int counters = RoutingDecodeCounters(tokens);
        Need(counter, 4L * counters, nameof(counter), $"[{counters}] u32");
        var args = new RoutingDecodeArgs
        {
            X = x.Pointer, Wr = wr.Pointer, Logits = logits.Pointer, Probs = probs.Pointer, Selected = selected.Pointer,
            Weights = weights.Pointer, MSizes = mSizes.Pointer, Gather = gather.Pointer, Inverse = inverse.Pointer,
            Counter = counter.Pointer, Tokens = tokens, Experts = experts, TopK = topK, Hidden = hidden, NormTopK = normTopK ? 1 : 0,
            Record = record.Pointer,
        };
        Kernel(_routingDecode, (programmatic ? 3 : 0) + Slot(dtype), (dtype, programmatic), static k => MoeKernelModules.RoutingDecode(k.programmatic),
            static k => MoeKernelModules.RoutingDecodeEntry(k.dtype))
            .Launch(stream, new Dim3(CeilDiv(experts, 2), CeilDiv(tokens, RouterGemvTokensPerRow)), new Dim3(128), 0, in args);
    }

    // ============================================================================================== checks and loading
    private static void CheckRouterDims(int tokens, int experts, int topK)
    {
        NonNegative(tokens, nameof(tokens));
        if (experts < 1 || experts > RouterMaxExperts)
            throw new ArgumentOutOfRangeException(nameof(experts), experts, $"E must be in [1, {RouterMaxExperts}].");
        if (topK < 1 || topK > experts)
            throw new ArgumentOutOfRangeException(nameof(topK), topK, $"k must be in [1, E={experts}].");
    }
}
