namespace MoeNative.Blocks;

/// <summary>
/// The host plan of one forward's token exchange on one rank r of N (pure arithmetic on the token counts; the
/// expert-parallel block fills it after the count exchange and reuses it for the backward). Rows are token slots
/// p = t*k + j of the sending rank.
/// </summary>
/// <remarks>
/// <para><b>Send side</b> (this rank's tokens): the routing kernels put the TK slots in expert order (stable in p);
/// with contiguous expert ranges (<see cref="ExpertPartition"/>) destination d's rows are the slice
/// <c>[SendOffset(d), SendOffset(d) + SendCount(d))</c> of that order, <c>SendCount(d) = Σ_{e ∈ d} m_sizes[e]</c>.</para>
/// <para><b>Count exchange</b>: rank r sends m_sizes[FirstExpert(d) .. + ExpertCount(d)) to every d and receives, from
/// every s, the rows s sends it per local expert: <c>receivedCounts[s * E_r + e]</c>.</para>
/// <para><b>Receive side</b> (this rank's experts): source s's rows land at <c>[ReceiveOffset(s), + ReceiveCount(s))</c>
/// of the receive buffer, in s's expert order (source-major). The local grouped GEMMs walk them expert-major:
/// local row q of expert e (expert e's rows start at Σ_{e' &lt; e} LocalExpertRows[e']) is receive row
/// <c>LocalGather[q]</c>; within an expert the rows are ordered by source rank, then by the source's slot order.</para>
/// <para><b>Fixed combine order</b>: the expert outputs go back along the same slices (receive row → the sender's
/// expert-ordered row it came from), so every token slot gets its own expert's row in the place the sender's routing
/// gave it, whatever the arrival order; the sender combines <c>Y[t] = Σ_j w[t,j]·U[t*k+j]</c> in j order (the fused
/// block's combine kernel). Deterministic for fixed inputs and N; with N = 1 every order is the fused block's.</para>
/// </remarks>
public sealed class ExchangePlan
{
    private int[] _sendCounts = [], _sendOffsets = [], _receiveCounts = [], _receiveOffsets = [];
    private int[] _localExpertRows = [], _localGather = [], _localInverse = [];

    /// <param name="partition">Which rank holds which experts.</param>
    /// <param name="rank">This rank.</param>
    public ExchangePlan(ExpertPartition partition, int rank)
    {
        ArgumentNullException.ThrowIfNull(partition);
        Partition = partition;
        LocalExperts = partition.ExpertCount(rank); // validates rank
        Rank = rank;
        FirstLocalExpert = partition.FirstExpert(rank);
        _sendCounts = new int[partition.Ranks];
        _sendOffsets = new int[partition.Ranks];
        _receiveCounts = new int[partition.Ranks];
        _receiveOffsets = new int[partition.Ranks];
        _localExpertRows = new int[LocalExperts];
    }

    public ExpertPartition Partition { get; }

    public int Rank { get; }

    /// <summary>E_r: experts on this rank.</summary>
    public int LocalExperts { get; }

    /// <summary>The global id of local expert 0.</summary>
    public int FirstLocalExpert { get; }

    /// <summary>TK of this rank's tokens (Σ SendCount).</summary>
    public int TotalSent { get; private set; }

    /// <summary>R: rows this rank's experts receive (Σ ReceiveCount).</summary>
    public int TotalReceived { get; private set; }

    /// <summary>True once <see cref="Build"/> succeeded.</summary>
    public bool IsBuilt { get; private set; }

    /// <summary>Rows sent to rank d. // [N]</summary>
    public ReadOnlySpan<int> SendCounts => _sendCounts;

    /// <summary>First expert-ordered row sent to rank d. // [N]</summary>
    public ReadOnlySpan<int> SendOffsets => _sendOffsets;

    /// <summary>Rows received from rank s. // [N]</summary>
    public ReadOnlySpan<int> ReceiveCounts => _receiveCounts;

    /// <summary>First receive row from rank s. // [N]</summary>
    public ReadOnlySpan<int> ReceiveOffsets => _receiveOffsets;

    /// <summary>Received rows per local expert: the local grouped GEMMs' m_sizes. // [E_r]</summary>
    public ReadOnlySpan<int> LocalExpertRows => _localExpertRows;

    /// <summary>Local expert-ordered row → receive row. // [R]</summary>
    public ReadOnlySpan<int> LocalGather => _localGather.AsSpan(0, TotalReceived);

    /// <summary>Receive row → local expert-ordered row (the inverse permutation of <see cref="LocalGather"/>). // [R]</summary>
    public ReadOnlySpan<int> LocalInverse => _localInverse.AsSpan(0, TotalReceived);

    /// <summary>Where rank r's count message to rank d starts in its m_sizes [E], and its length (E_d).</summary>
    public (int Offset, int Length) CountSlice(int destination) =>
        (Partition.FirstExpert(destination), Partition.ExpertCount(destination));

    /// <summary>
    /// Fills the plan from this rank's histogram <paramref name="expertRows"/> (m_sizes [E]) and the counts received
    /// from every source (<paramref name="receivedCounts"/> [N, E_r], source-major). Reuses its arrays (grown, never
    /// shrunk). Every count is checked first; on an exception the plan is left unbuilt.
    /// </summary>
    /// <exception cref="ArgumentException">A length is not E or N·E_r, a count is negative, the totals overflow int32,
    /// or <paramref name="tokenSlots"/> is not Σ m_sizes (the routing and the counts disagree).</exception>
    public void Build(ReadOnlySpan<int> expertRows, ReadOnlySpan<int> receivedCounts, int tokenSlots)
    {
        IsBuilt = false;
        int n = Partition.Ranks, el = LocalExperts;
        if (expertRows.Length != Partition.Experts)
            throw new ArgumentException($"expertRows has {expertRows.Length} entries; m_sizes has E = {Partition.Experts}.", nameof(expertRows));
        if (receivedCounts.Length != n * el)
            throw new ArgumentException($"receivedCounts has {receivedCounts.Length} entries; expected N·E_r = {n}·{el}.", nameof(receivedCounts));
        long sent = 0, received = 0;
        foreach (int c in expertRows)
        {
            if (c < 0) throw new ArgumentException($"A row count of m_sizes is negative ({c}).", nameof(expertRows));
            sent += c;
        }
        foreach (int c in receivedCounts)
        {
            if (c < 0) throw new ArgumentException($"A received row count is negative ({c}).", nameof(receivedCounts));
            received += c;
        }
        if (sent != tokenSlots)
            throw new ArgumentException($"m_sizes sums to {sent} rows but this rank has T·k = {tokenSlots} token slots.", nameof(tokenSlots));
        if (received > int.MaxValue)
            throw new ArgumentException($"This rank would receive {received} rows, more than int32 row indices hold.", nameof(receivedCounts));

        int offset = 0;
        for (int d = 0; d < n; d++)
        {
            int first = Partition.FirstExpert(d), count = Partition.ExpertCount(d), rows = 0;
            for (int e = first; e < first + count; e++) rows += expertRows[e];
            _sendOffsets[d] = offset;
            _sendCounts[d] = rows;
            offset += rows;
        }
        offset = 0;
        for (int s = 0; s < n; s++)
        {
            int rows = 0;
            for (int e = 0; e < el; e++) rows += receivedCounts[s * el + e];
            _receiveOffsets[s] = offset;
            _receiveCounts[s] = rows;
            offset += rows;
        }
        if (_localGather.Length < received)
        {
            _localGather = new int[Math.Max((int)received, 2 * _localGather.Length)];
            _localInverse = new int[_localGather.Length];
        }
        int q = 0;
        for (int e = 0; e < el; e++)
        {
            int rows = 0;
            for (int s = 0; s < n; s++)
            {
                // source s's rows for local expert e: after its rows for local experts 0..e-1
                int start = _receiveOffsets[s];
                for (int before = 0; before < e; before++) start += receivedCounts[s * el + before];
                int count = receivedCounts[s * el + e];
                for (int i = 0; i < count; i++, q++)
                {
                    _localGather[q] = start + i;
                    _localInverse[start + i] = q;
                }
                rows += count;
            }
            _localExpertRows[e] = rows;
        }
        TotalSent = tokenSlots;
        TotalReceived = (int)received;
        IsBuilt = true;
    }
}
