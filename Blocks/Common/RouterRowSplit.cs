using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Blocks;

/// <summary>
/// The split over token rows of the router weight gradient <c>dWr [E,H] = dLᵀ X</c> (K = T rows): a TN GEMM with one
/// group per chunk of rows has many times the output tiles of the one-group GEMM, whose few tiles (E x H / tile) each
/// walk all T rows in series. Each group writes an f32 partial [E,H] (<see cref="GroupedGemm.BackwardWeightTNFloat32"/>:
/// no rounding), and <see cref="MoeKernels.RouterWeightGradReduce"/> sums them in group order in f32 and rounds once
/// (deterministic, no atomics). The fused and the expert-parallel block both run it through <see cref="Plan"/>, so the
/// two give the same bits.
/// <para>Chunk P and groups G are functions of T alone (not of a grow-only capacity): P = max(256, class(T) / 32),
/// class(T) the power-of-two shape class; m_sizes = [T mod P, P, ..., P] (1 + T / P &lt;= 33 groups), read from a device
/// table per P: table row r is <c>[r, P, ..., P]</c>, so the pointer to row T mod P is the m_sizes of T and the launch
/// needs no upload (graph-capturable).</para>
/// <para>Where it runs: T in a shape class of at least <see cref="MinSplitClass"/> tokens (smaller T keeps one group:
/// its few row stages cost less than a second launch and the partials' round trip), bf16/fp16 with E and H multiples
/// of 8 and 16-byte aligned operands (the tensor-core TN kernels, sm_80 and sm_90a, have the f32 epilogue; the SIMT
/// kernel does not), and a TN tile with that epilogue (autotune picks among them; an explicit configuration without
/// it keeps one group).</para>
/// </summary>
internal sealed class RouterRowSplit : IDisposable
{
    /// <summary>Most whole chunks of P rows (the groups are at most this plus the remainder).</summary>
    public const int MaxChunks = 32;

    /// <summary>Fewest rows per chunk: below it the per-group tile's setup outweighs its rows.</summary>
    public const int MinChunkRows = 256;

    /// <summary>Smallest shape class that splits (T &gt; 512): 3 to 33 groups of at least 256 rows.</summary>
    public const int MinSplitClass = 1024;

    /// <summary>Largest shape class that splits (4M tokens; its table of P = 131072 is 34.6 MB): above it the tables would
    /// outgrow one host array, and the one-group GEMM's time is small beside the rest of such a layer.</summary>
    public const int MaxSplitClass = 1 << 22;

    /// <summary>Groups of every table: enough for any T (T / P &lt;= class(T) / P &lt;= 32).</summary>
    public const int TableGroups = MaxChunks + 1;

    private readonly DeviceBuffer<int>? _table; // per P level l (P = 256 << l): [P][TableGroups] i32, row r = [r, P, ..., P]

    /// <summary>The tables for up to <paramref name="capacityTokens"/> rows (none below <see cref="MinSplitClass"/>).</summary>
    public RouterRowSplit(CudaContext context, int capacityTokens)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacityTokens);
        CapacityTokens = capacityTokens;
        if (BlockWorkspaceLayout.ShapeClassTokens(capacityTokens) < MinSplitClass) return;
        int largest = ChunkRowsFor(Math.Min(capacityTokens, MaxSplitClass));
        var table = new int[TableOffset(largest * 2)];
        for (int p = MinChunkRows; p <= largest; p *= 2)
        {
            long at = TableOffset(p);
            for (int r = 0; r < p; r++)
            {
                table[at + (long)r * TableGroups] = r;
                for (int j = 1; j < TableGroups; j++) table[at + (long)r * TableGroups + j] = p;
            }
        }
        _table = DeviceBuffer<int>.FromHost(context, table);
    }

    /// <summary>Largest T served.</summary>
    public int CapacityTokens { get; }

    /// <summary>P for T rows: class(T) / <see cref="MaxChunks"/>, at least <see cref="MinChunkRows"/>.</summary>
    public static int ChunkRowsFor(int tokens) => Math.Max(MinChunkRows, BlockWorkspaceLayout.ShapeClassTokens(tokens) / MaxChunks);

    /// <summary>G for T rows: 1 + T / P (the first group holds T mod P rows, maybe none).</summary>
    public static int GroupsFor(int tokens) => 1 + tokens / ChunkRowsFor(tokens);

    /// <summary>Whether T rows are split by shape class (<see cref="MinSplitClass"/> to <see cref="MaxSplitClass"/>),
    /// before the shape checks of <see cref="Takes"/>.</summary>
    public static bool SplitsClass(int tokens) =>
        tokens > 0 && tokens <= MaxSplitClass && BlockWorkspaceLayout.ShapeClassTokens(tokens) >= MinSplitClass;

    /// <summary>Bytes of the f32 partials [G,E,H] for up to <paramref name="capacityTokens"/> rows: G of the capacity
    /// (no T below it has more groups), 0 when nothing splits (a shape class below <see cref="MinSplitClass"/>, or fp32).</summary>
    public static long PartialsBytes(int capacityTokens, ScalarType dtype, int experts, int hidden) =>
        SplitsClass(Math.Min(capacityTokens, MaxSplitClass)) && dtype is ScalarType.BFloat16 or ScalarType.Float16
            ? (long)GroupsFor(Math.Min(capacityTokens, MaxSplitClass)) * experts * hidden * 4 : 0;

    /// <summary>
    /// The split GEMM of dWr for T = <paramref name="tokens"/> (partials [G,E,H] f32 = per-chunk dLᵀX), or null when T
    /// keeps the one-group GEMM (see the class remarks). The caller runs it, then the reduce over its
    /// <c>Rows.Experts</c> groups into dWr.
    /// </summary>
    public FusedGemmCall? Plan(int tokens, ScalarType dtype, FusedBlockOptions options,
        DeviceRange dLogits, // [T,E] dtype
        DeviceRange x,       // [T,H] dtype
        DeviceRange partials, // [G,E,H] f32
        int experts, int hidden)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (_table is null || tokens > CapacityTokens || !Takes(tokens, dtype, options, dLogits, x, partials, experts, hidden)) return null;
        return FusedGemmCall.TNFloat32(FusedGemm.RouterBackwardWeightSplit, dLogits, x, partials, Rows(tokens), experts, hidden);
    }

    /// <summary>
    /// The GEMM of dWr for T = <paramref name="tokens"/> in either block: <see cref="Plan"/>'s split into
    /// <paramref name="partials"/> where it takes T, else the one-group TN GEMM straight into <paramref name="dRouter"/>.
    /// After running it, the caller calls <see cref="ReduceAfter"/> (nothing to do for the one-group GEMM).
    /// </summary>
    public FusedGemmCall WeightGradCall(int tokens, ScalarType dtype, FusedBlockOptions options,
        DeviceRange dLogits,  // [T,E] dtype
        DeviceRange x,        // [T,H] dtype
        DeviceRange partials, // [G,E,H] f32, or Null
        DeviceRange dRouter,  // [E,H] dtype out
        GroupedRows routerRows, int experts, int hidden) =>
        Plan(tokens, dtype, options, dLogits, x, partials, experts, hidden)
        ?? FusedGemmCall.TN(FusedGemm.RouterBackwardWeight, dLogits, x, dRouter, routerRows, experts, hidden, RowSource.Identity, RowSource.Identity);

    /// <summary>After <paramref name="call"/> (from <see cref="WeightGradCall"/>) ran on <paramref name="stream"/>: the
    /// sum of the split's f32 partials in group order into <paramref name="dRouter"/>; nothing after the one-group GEMM.</summary>
    public static void ReduceAfter(MoeKernels kernels, CudaStream stream, ScalarType dtype, in FusedGemmCall call,
        DeviceRange dRouter, // [E,H] dtype out
        int experts, int hidden)
    {
        if (call.Gemm == FusedGemm.RouterBackwardWeightSplit)
            kernels.RouterWeightGradReduce(stream, dtype, call.C, dRouter, call.Rows.Experts, experts, hidden);
    }

    /// <summary>Whether the split takes T = <paramref name="tokens"/> with these operands and options (the rule of the
    /// class remarks, no device needed): a shape class of at least <see cref="MinSplitClass"/>, the f32-output GEMM's
    /// shape (<see cref="GroupedGemm.SuitsFloat32Output"/>), room for the G partials, and autotune or a TN tile with the
    /// f32 epilogue (or none: the default).</summary>
    public static bool Takes(int tokens, ScalarType dtype, FusedBlockOptions options, DeviceRange dLogits, DeviceRange x, DeviceRange partials,
        int experts, int hidden)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!SplitsClass(tokens) || !GroupedGemm.SuitsFloat32Output(dtype, experts, hidden, dLogits, x, partials)) return false;
        if (!partials.CanHold((long)GroupsFor(tokens) * experts * hidden * 4)) return false;
        return options.Autotune || options.ExplicitConfig(FusedGemm.RouterBackwardWeightSplit) is not { } explicitConfig
            || GroupedGemmSpecs.Float32OutputProblem(GroupedGemmLayout.BackwardWeightTN, dtype, explicitConfig, GroupedGemmEpilogue.Plain) is null;
    }

    /// <summary>The groups of <paramref name="tokens"/> rows: m_sizes [1 + T / P] from the table of P (no upload).</summary>
    public GroupedRows Rows(int tokens)
    {
        if (_table is null || !SplitsClass(tokens) || tokens > CapacityTokens)
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens,
                $"T must be in [{MinSplitClass / 2 + 1}, {Math.Min(CapacityTokens, MaxSplitClass)}] (a shape class of {MinSplitClass} to {MaxSplitClass}, within the capacity).");
        int p = ChunkRowsFor(tokens);
        return new GroupedRows(_table.PointerAt(TableOffset(p) + (long)(tokens % p) * TableGroups), 0, tokens, GroupsFor(tokens), 1);
    }

    /// <summary>Element offset of the table of chunk <paramref name="chunkRows"/> (a power of two >= 256): the tables of
    /// 256, 512, ... before it, P x <see cref="TableGroups"/> each.</summary>
    private static long TableOffset(int chunkRows) => (long)(chunkRows - MinChunkRows) * TableGroups;

    public void Dispose() => _table?.Dispose();
}
