namespace MoeNative.Blocks;

/// <summary>
/// Which rank holds which experts: E experts in N contiguous ranges, rank r holding
/// <c>[FirstExpert(r), FirstExpert(r) + ExpertCount(r))</c>; the first E mod N ranks hold one expert more. Contiguous
/// ranges keep the expert-ordered rows of a rank grouped by destination rank, so each destination's rows are one
/// slice of the sender's expert-ordered buffer.
/// </summary>
public sealed record ExpertPartition
{
    /// <exception cref="ArgumentOutOfRangeException">ranks &lt; 1, experts &lt; 1, or more ranks than experts.</exception>
    public ExpertPartition(int experts, int ranks)
    {
        if (experts < 1) throw new ArgumentOutOfRangeException(nameof(experts), experts, "E must be >= 1.");
        if (ranks < 1) throw new ArgumentOutOfRangeException(nameof(ranks), ranks, "The number of ranks must be >= 1.");
        if (ranks > experts)
            throw new ArgumentOutOfRangeException(nameof(ranks), ranks, $"{ranks} ranks cannot split {experts} experts: every rank holds at least one.");
        Experts = experts;
        Ranks = ranks;
    }

    /// <summary>E.</summary>
    public int Experts { get; }

    /// <summary>N.</summary>
    public int Ranks { get; }

    /// <summary>Experts of rank <paramref name="rank"/>: ⌊E/N⌋, plus one for the first E mod N ranks.</summary>
    public int ExpertCount(int rank) => Experts / Ranks + (CheckRank(rank) < Experts % Ranks ? 1 : 0);

    /// <summary>The first expert of rank <paramref name="rank"/>.</summary>
    public int FirstExpert(int rank) => CheckRank(rank) * (Experts / Ranks) + Math.Min(rank, Experts % Ranks);

    /// <summary>The most experts any rank holds.</summary>
    public int MaxExpertsPerRank => (Experts + Ranks - 1) / Ranks;

    /// <summary>The rank holding expert <paramref name="expert"/>.</summary>
    public int RankOf(int expert)
    {
        if (expert < 0 || expert >= Experts)
            throw new ArgumentOutOfRangeException(nameof(expert), expert, $"An expert id must be in [0, {Experts}).");
        int big = Experts / Ranks + 1, bigRanks = Experts % Ranks;
        return expert < big * bigRanks ? expert / big : bigRanks + (expert - big * bigRanks) / (Experts / Ranks);
    }

    private int CheckRank(int rank) => rank >= 0 && rank < Ranks ? rank
        : throw new ArgumentOutOfRangeException(nameof(rank), rank, $"A rank must be in [0, {Ranks}).");
}
