namespace MoeNative.Reference;

/// <summary>
/// Which experts each token uses and with what weight: <c>Selected [T,k]</c> expert ids (descending probability when
/// computed by <see cref="MoeRouter"/>), <c>Weights [T,k]</c> routing weights (storage-dtype values). Flattened slot
/// p = t*k + j. Blocks accept a precomputed routing so that two implementations can be compared under the same
/// (discontinuous) top-k decision.
/// </summary>
public sealed class MoeRouting
{
    /// <summary>T.</summary>
    public int Tokens { get; }
    /// <summary>k.</summary>
    public int TopK { get; }
    /// <summary>Expert id per slot. // [T,k]</summary>
    public int[] Selected { get; }
    /// <summary>Routing weight per slot. // [T,k]</summary>
    public float[] Weights { get; }

    /// <exception cref="ArgumentException">Lengths other than T*k.</exception>
    public MoeRouting(int tokens, int topK, int[] selected /*[T,k]*/, float[] weights /*[T,k]*/)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(topK);
        ArgumentNullException.ThrowIfNull(selected);
        ArgumentNullException.ThrowIfNull(weights);
        long tk = (long)tokens * topK;
        if (selected.LongLength != tk) throw new ArgumentException($"selected must be [T={tokens},k={topK}] = {tk} ids, got {selected.Length}.", nameof(selected));
        if (weights.LongLength != tk) throw new ArgumentException($"weights must be [T={tokens},k={topK}] = {tk} values, got {weights.Length}.", nameof(weights));
        Tokens = tokens;
        TopK = topK;
        Selected = selected;
        Weights = weights;
    }

    /// <summary>
    /// Checks this routing against a layer: k equals the config's k, every id in [0,E), no expert twice for one token
    /// (HF's top-k never repeats one). Throws <see cref="ArgumentException"/> naming the token, slot and id.
    /// </summary>
    public void Validate(MoeConfig config, int tokens, string paramName = "routing")
    {
        ArgumentNullException.ThrowIfNull(config);
        if (Tokens != tokens) throw new ArgumentException($"Routing is for T={Tokens} tokens but the input has T={tokens}.", paramName);
        if (TopK != config.TopK) throw new ArgumentException($"Routing has k={TopK} but the config has num_experts_per_tok={config.TopK}.", paramName);
        RoutingIndices.CheckSelected(Selected, Tokens, TopK, config.NumExperts, paramName);
    }

    /// <summary>m_sizes, stable gather and inverse of <see cref="Selected"/>.</summary>
    public RoutingIndices Indices(int numExperts) => RoutingIndices.FromSelected(Selected, TopK, numExperts);
}

/// <summary>
/// The expert-ordered layout of the T*k slots. Row r of the expert-ordered layout holds slot <c>Gather[r]</c>
/// (token <c>Gather[r] / k</c>); rows of one expert are contiguous, experts in increasing id, and within one expert
/// slots in increasing p (a STABLE argsort of the flattened selection). <c>Inverse[Gather[r]] = r</c>.
/// </summary>
public sealed class RoutingIndices
{
    public int NumExperts { get; }
    public int TopK { get; }
    /// <summary>T*k.</summary>
    public int Rows { get; }
    /// <summary>m_sizes: rows per expert (histogram of the selection). // [E] </summary>
    public int[] TokenCounts { get; }
    /// <summary>First row of each expert; <c>ExpertOffsets[E] = T*k</c>. // [E+1]</summary>
    public int[] ExpertOffsets { get; }
    /// <summary>Slot held by each expert-ordered row. // [T*k]</summary>
    public int[] Gather { get; }
    /// <summary>Row holding each slot. // [T*k]</summary>
    public int[] Inverse { get; }

    private RoutingIndices(int numExperts, int topK, int[] counts, int[] offsets, int[] gather, int[] inverse)
    {
        NumExperts = numExperts;
        TopK = topK;
        Rows = gather.Length;
        TokenCounts = counts;
        ExpertOffsets = offsets;
        Gather = gather;
        Inverse = inverse;
    }

    /// <summary>Expert of expert-ordered row r.</summary>
    public int ExpertOfRow(int row)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"Row must be in [0, {Rows}).");
        int e = Array.BinarySearch(ExpertOffsets, row);
        if (e < 0) return ~e - 1;
        while (e + 1 < ExpertOffsets.Length && ExpertOffsets[e + 1] == row) e++; // skip empty experts
        return e;
    }

    /// <summary>Histogram, exclusive scan, stable scatter.</summary>
    /// <exception cref="ArgumentException">An id outside [0,E), a repeated expert for one token, or a length that is not a multiple of k.</exception>
    public static RoutingIndices FromSelected(ReadOnlySpan<int> selected /*[T,k]*/, int topK, int numExperts)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(topK);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numExperts);
        if (selected.Length % topK != 0)
            throw new ArgumentException($"selected has {selected.Length} ids, not a multiple of k={topK}.", nameof(selected));
        CheckSelected(selected, selected.Length / topK, topK, numExperts, nameof(selected));
        var counts = new int[numExperts];
        foreach (int e in selected) counts[e]++;
        var offsets = new int[numExperts + 1];
        for (int e = 0; e < numExperts; e++) offsets[e + 1] = offsets[e] + counts[e];
        var next = (int[])offsets.Clone();
        var gather = new int[selected.Length];
        var inverse = new int[selected.Length];
        for (int p = 0; p < selected.Length; p++)
        {
            int r = next[selected[p]]++;
            gather[r] = p;
            inverse[p] = r;
        }
        return new RoutingIndices(numExperts, topK, counts, offsets, gather, inverse);
    }

    internal static void CheckSelected(ReadOnlySpan<int> selected, int tokens, int topK, int numExperts, string paramName)
    {
        for (int t = 0; t < tokens; t++)
            for (int j = 0; j < topK; j++)
            {
                int e = selected[t * topK + j];
                if ((uint)e >= (uint)numExperts)
                    throw new ArgumentException($"Expert id {e} at token {t}, slot {j} is out of range [0, {numExperts}).", paramName);
                for (int i = 0; i < j; i++)
                    if (selected[t * topK + i] == e)
                        throw new ArgumentException($"Expert {e} is selected twice at token {t} (slots {i} and {j}); top-k ids must be distinct.", paramName);
            }
    }
}
