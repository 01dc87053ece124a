using MoeNative.Reference;
using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Blocks;

/// <summary>One buffer of the fused block's workspace. Dimension legend: T tokens, H hidden, I intermediate,
/// E experts, k experts per token; TK = T*k rows in expert order (r) or token-slot order (p = t*k + j).</summary>
internal enum BlockBuffer
{
    // ---- forward ----
    /// <summary>dtype [T,E] router logits.</summary>
    Logits,
    /// <summary>f32 [T,E] softmax of the logits (kept for the router backward).</summary>
    Probs,
    /// <summary>i32 [T,k] selected experts (computed; ignored when routing is passed in).</summary>
    Selected,
    /// <summary>dtype [T,k] routing weights (computed; ignored when routing is passed in).</summary>
    RoutingWeights,
    /// <summary>i32 [E] rows per expert.</summary>
    MSizes,
    /// <summary>i32 [TK] gather[r] = token slot p of expert-ordered row r.</summary>
    Gather,
    /// <summary>i32 [TK] inverse[p] = expert-ordered row r of token slot p.</summary>
    Inverse,
    /// <summary>i32 [64,E] scratch of the routing indices (per-chunk counts, then per-chunk first rows).</summary>
    RoutingCounts,
    /// <summary>dtype [TK,H] X rows in expert order (absent with PermuteX; the fused forward gathers X inside GEMM1, its backward fills this for the GEMM1 dW).</summary>
    XPermuted,
    /// <summary>dtype [TK,2I] GEMM1 output, expert order.</summary>
    FirstGemm,
    /// <summary>dtype [TK,I] silu(gate) * up, expert order.</summary>
    Intermediate,
    /// <summary>dtype [TK,H] GEMM2 output: expert order, or token-slot order with PermuteY.</summary>
    SecondGemm,

    // ---- backward ----
    /// <summary>dtype [TK,H] dU = w * dY, in the layout of <see cref="SecondGemm"/> (absent with the routed SwiGLU backward).</summary>
    DSecondGemm,
    /// <summary>dtype [TK,I] w · A in expert order: GEMM2 dW's operand in the routed SwiGLU backward
    /// (<see cref="MoeNative.Ptx.MoeKernels.SiluMulBackwardRouted"/>), which needs no dU.</summary>
    ScaledIntermediate,
    /// <summary>f32 [T,k] gradient of the routing weights.</summary>
    DRoutingWeights,
    /// <summary>dtype [TK,I] gradient of the intermediate, expert order.</summary>
    DIntermediate,
    /// <summary>dtype [TK,2I] gradient of GEMM1's output, expert order.</summary>
    DFirstGemm,
    /// <summary>dtype [TK,H] GEMM1 dX in expert order (absent with PermuteX, which stores straight to token-slot order).</summary>
    DXPermutedExpertOrder,
    /// <summary>dtype [TK,H] GEMM1 dX in token-slot order.</summary>
    DXPermutedSlotOrder,
    /// <summary>dtype [T,E] gradient of the router logits.</summary>
    DLogits,
    /// <summary>dtype [T,H] router part of dX (the addend of the sum over k).</summary>
    DXRouter,
    /// <summary>f32 [G,E,H] the router dW's partials, one per group of rows (<see cref="RouterRowSplit"/>; G of the capacity).</summary>
    RouterWeightPartials,
}

/// <summary>One slice of a workspace arena: byte offset, byte size and element count.</summary>
internal readonly record struct WorkspaceSlice(BlockBuffer Buffer, long Offset, long Bytes, long Elements);

/// <summary>
/// Byte layout of one workspace arena of the fused block (forward or backward part) for a capacity of
/// <see cref="CapacityTokens"/> tokens. One device allocation, carved into <see cref="Alignment"/>-byte aligned
/// slices, allocated once per shape class and reused by every call with T ≤ capacity.
/// </summary>
internal sealed class BlockWorkspaceLayout
{
    /// <summary>Byte alignment of every slice (cp.async/ldmatrix need 16; 256 matches cudaMalloc).</summary>
    public const int Alignment = 256;

    private readonly Dictionary<BlockBuffer, WorkspaceSlice> _slices;

    private BlockWorkspaceLayout(int capacityTokens, bool backward, List<WorkspaceSlice> slices)
    {
        CapacityTokens = capacityTokens;
        IsBackward = backward;
        Slices = slices;
        _slices = slices.ToDictionary(s => s.Buffer);
        TotalBytes = slices.Count == 0 ? 0 : slices[^1].Offset + AlignUp(slices[^1].Bytes);
    }

    /// <summary>Largest T this layout serves.</summary>
    public int CapacityTokens { get; }

    /// <summary>True for the backward arena.</summary>
    public bool IsBackward { get; }

    /// <summary>Sum of the aligned slice sizes: the arena's allocation size.</summary>
    public long TotalBytes { get; }

    /// <summary>Slices in offset order (buffers the options make unnecessary are absent).</summary>
    internal IReadOnlyList<WorkspaceSlice> Slices { get; }

    /// <summary>Whether the layout holds <paramref name="buffer"/>.</summary>
    public bool Contains(BlockBuffer buffer) => _slices.ContainsKey(buffer);

    /// <summary>The slice of <paramref name="buffer"/>; <see cref="KeyNotFoundException"/> when the options exclude it.</summary>
    internal WorkspaceSlice this[BlockBuffer buffer] => _slices.TryGetValue(buffer, out var s)
        ? s
        : throw new KeyNotFoundException($"The workspace has no {buffer} buffer for these options.");

    /// <summary>Rounds <paramref name="bytes"/> up to <see cref="Alignment"/>.</summary>
    public static long AlignUp(long bytes) => (bytes + Alignment - 1) / Alignment * Alignment;

    /// <summary>
    /// Shape class of <paramref name="tokens"/>: the next power of two (1, 2, 4, ...). Workspace capacity and the
    /// autotune cache are keyed by it, so T = 100 and T = 128 share both.
    /// </summary>
    public static int ShapeClassTokens(int tokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tokens);
        if (tokens > (1 << 30))
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, "At most 2^30 tokens.");
        return (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)tokens);
    }

    /// <summary>Layout of the forward arena (everything the forward writes and the backward reads).
    /// <paramref name="copiesXp"/>: the backward copies <c>Xp = X[gather/k]</c> into the arena (null: unless
    /// <see cref="FusedBlockOptions.PermuteX"/>; the fused block passes false on the sm_90a path, which gathers).</summary>
    public static BlockWorkspaceLayout Forward(MoeConfig config, ScalarType dtype, FusedBlockOptions options, int capacityTokens, bool? copiesXp = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacityTokens);
        long t = capacityTokens, h = config.HiddenSize, i = config.IntermediateSize, e = config.NumExperts, k = config.TopK;
        long tk = t * k;
        int s = dtype.SizeOf();
        var b = new Builder();
        b.Add(BlockBuffer.Logits, t * e, s);
        b.Add(BlockBuffer.Probs, t * e, 4);
        b.Add(BlockBuffer.Selected, tk, 4);
        b.Add(BlockBuffer.RoutingWeights, tk, s);
        b.Add(BlockBuffer.MSizes, e, 4);
        b.Add(BlockBuffer.Gather, tk, 4);
        b.Add(BlockBuffer.Inverse, tk, 4);
        b.Add(BlockBuffer.RoutingCounts, MoeKernels.RoutingIndicesScratchBytes(config.NumExperts) / 4, 4);
        if (copiesXp ?? !options.PermuteX) b.Add(BlockBuffer.XPermuted, tk * h, s);
        b.Add(BlockBuffer.FirstGemm, tk * 2 * i, s);
        b.Add(BlockBuffer.Intermediate, tk * i, s);
        b.Add(BlockBuffer.SecondGemm, tk * h, s);
        return new BlockWorkspaceLayout(capacityTokens, backward: false, b.Slices);
    }

    /// <summary>Layout of the backward arena (allocated on the first backward only). <paramref name="gemmScattersDX"/>:
    /// the GEMM1 dX writes token-slot order itself (the fused block's epilogue scatter), so no expert-order dXp buffer
    /// is needed; else (cuBLAS, which cannot scatter) it gets one unless <see cref="FusedBlockOptions.PermuteX"/>.
    /// <paramref name="routerSplit"/>: the router dW may run split over row chunks (the fused block), with its f32 partials
    /// here when the capacity's shape class splits (<see cref="RouterRowSplit.PartialsBytes"/>; none for fp32).
    /// <paramref name="routedSwiGlu"/>: the backward applies the routing weights in the SwiGLU backward (the fused
    /// block without FuseSwiGluBackward): no dU [TK,H], a w·A [TK,I] instead.</summary>
    public static BlockWorkspaceLayout Backward(MoeConfig config, ScalarType dtype, FusedBlockOptions options, int capacityTokens, bool gemmScattersDX = false,
        bool routerSplit = false, bool routedSwiGlu = false)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacityTokens);
        long t = capacityTokens, h = config.HiddenSize, i = config.IntermediateSize, e = config.NumExperts, k = config.TopK;
        long tk = t * k;
        int s = dtype.SizeOf();
        var b = new Builder();
        if (routedSwiGlu) b.Add(BlockBuffer.ScaledIntermediate, tk * i, s);
        else b.Add(BlockBuffer.DSecondGemm, tk * h, s);
        b.Add(BlockBuffer.DRoutingWeights, tk, 4);
        b.Add(BlockBuffer.DIntermediate, tk * i, s);
        b.Add(BlockBuffer.DFirstGemm, tk * 2 * i, s);
        if (!options.PermuteX && !gemmScattersDX) b.Add(BlockBuffer.DXPermutedExpertOrder, tk * h, s);
        b.Add(BlockBuffer.DXPermutedSlotOrder, tk * h, s);
        b.Add(BlockBuffer.DLogits, t * e, s);
        b.Add(BlockBuffer.DXRouter, t * h, s);
        long partialBytes = routerSplit ? RouterRowSplit.PartialsBytes(capacityTokens, dtype, (int)e, (int)h) : 0;
        if (partialBytes > 0) b.Add(BlockBuffer.RouterWeightPartials, partialBytes / 4, 4);
        return new BlockWorkspaceLayout(capacityTokens, backward: true, b.Slices);
    }

    private sealed class Builder
    {
        private long _offset;
        public List<WorkspaceSlice> Slices { get; } = [];

        public void Add(BlockBuffer buffer, long elements, int elementSize)
        {
            long bytes = checked(elements * elementSize);
            Slices.Add(new WorkspaceSlice(buffer, _offset, bytes, elements));
            _offset = checked(_offset + AlignUp(bytes));
        }
    }
}
