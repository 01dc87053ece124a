using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Blocks;

/// <summary>
/// The split over token rows of the router weight gradient <c>dWr [E,H] = dLᵀ X</c> (K = T rows): a TN GEMM with one
/// group per chunk of rows has S times the output tiles of the one-group GEMM, whose few tiles (E x H / tile) each
/// walk all T rows in series; each group writes a partial [E,H], and <see cref="MoeKernels.RouterWeightGradReduce"/>
/// sums them in group order (deterministic, no atomics).
/// <para>Groups for T rows, chunk P rows (from the workspace capacity): m_sizes = [T mod P, P, P, ..., P] (q = T / P
/// chunks of P after the remainder), read from a device table <c>[P][G]</c> whose row r is <c>[r, P, ..., P]</c>:
/// the pointer to row T mod P is the m_sizes of T, so the launch needs no upload (graph-capturable).</para>
/// </summary>
internal sealed class RouterRowSplit : IDisposable
{
    /// <summary>Most chunks of P rows (the groups are at most this plus the remainder).</summary>
    public const int MaxChunks = 32;

    /// <summary>Fewest rows per chunk: below it the per-group tile's setup outweighs its rows.</summary>
    public const int MinChunkRows = 256;

    private readonly DeviceBuffer<int> _table; // [P][G] i32: row r = [r, P, ..., P]

    /// <summary>The table for up to <paramref name="capacityTokens"/> rows.</summary>
    public RouterRowSplit(CudaContext context, int capacityTokens)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacityTokens);
        CapacityTokens = capacityTokens;
        ChunkRows = ChunkRowsFor(capacityTokens);
        Groups = GroupsFor(capacityTokens);
        var table = new int[(long)ChunkRows * Groups];
        for (int r = 0; r < ChunkRows; r++)
        {
            table[(long)r * Groups] = r;
            for (int j = 1; j < Groups; j++) table[(long)r * Groups + j] = ChunkRows;
        }
        _table = new DeviceBuffer<int>(context, table.Length);
        _table.CopyFromHost(table);
    }

    /// <summary>Largest T served.</summary>
    public int CapacityTokens { get; }

    /// <summary>P: rows per chunk.</summary>
    public int ChunkRows { get; }

    /// <summary>G: most groups of a call (the partials buffer holds G x E x H).</summary>
    public int Groups { get; }

    /// <summary>P for a capacity: capacity / <see cref="MaxChunks"/>, at least <see cref="MinChunkRows"/>.</summary>
    public static int ChunkRowsFor(int capacityTokens) => Math.Max(MinChunkRows, capacityTokens / MaxChunks);

    /// <summary>G for a capacity: 1 + capacity / P.</summary>
    public static int GroupsFor(int capacityTokens) => 1 + capacityTokens / ChunkRowsFor(capacityTokens);

    /// <summary>True when T rows are split (at least one whole chunk); else the one-group GEMM writes dWr itself.</summary>
    public bool Splits(int tokens) => tokens >= ChunkRows;

    /// <summary>The groups of <paramref name="tokens"/> rows (1 + T / P of them, the first holding T mod P rows, maybe none).</summary>
    public GroupedRows Rows(int tokens)
    {
        if (tokens < 0 || tokens > CapacityTokens)
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"T must be in [0, {CapacityTokens}].");
        return new GroupedRows(_table.PointerAt((long)(tokens % ChunkRows) * Groups), 0, tokens, 1 + tokens / ChunkRows, 1);
    }

    public void Dispose() => _table.Dispose();
}
