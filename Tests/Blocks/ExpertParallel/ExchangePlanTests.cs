using MoeNative.Blocks;
using MoeNative.Tests.Support;

namespace MoeNative.Tests.Blocks.ExpertParallel;

/// <summary>
/// The exchange plan on the CPU: N ranks' plans are built from simulated routing and the whole exchange (send
/// slices, source-major receive, the local experts' gather, results back, the combine read) is replayed on host
/// arrays. Every token slot must get back the value its own expert computed for its own token, which the test knows
/// independently (value = 1000·expert + global token); the receive order must be (source rank, then the source's slot
/// order); with N = 1 the local gather is the identity. Routing cases: random, skewed (every token to rank 0's
/// experts), ranks with no tokens, all tokens on one rank.
/// </summary>
[TestClass]
public sealed class ExchangePlanTests
{
    private const int Experts = 16, TopK = 2;

    public static IEnumerable<object[]> Cases()
    {
        foreach (int n in (int[])[1, 2, 4, 8])
            foreach (string routing in (string[])["random", "skewed", "empty-ranks", "one-rank-has-all"])
                yield return [n, routing];
    }

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void Exchange_EverySlotGetsItsOwnExpertsRow_InAFixedOrder(int ranks, string routing)
    {
        int seed = TestSeeds.Stable(nameof(ExchangePlanTests), ranks, routing);
        var rng = new Random(seed);
        var partition = new ExpertPartition(Experts, ranks);
        int[] tokens = Enumerable.Range(0, ranks).Select(r => routing switch
        {
            "empty-ranks" => r % 2 == 1 ? 0 : rng.Next(1, 40),
            "one-rank-has-all" => r == ranks - 1 ? 57 : 0,
            _ => rng.Next(1, 40),
        }).ToArray();
        int[] tokenBase = new int[ranks];
        for (int r = 1; r < ranks; r++) tokenBase[r] = tokenBase[r - 1] + tokens[r - 1];
        // sel[r][t*k+j]: distinct experts per token; "skewed" only rank 0's experts
        int pool = routing == "skewed" ? partition.ExpertCount(0) : Experts;
        int[][] sel = tokens.Select(t => Enumerable.Range(0, t).SelectMany(_ => Enumerable.Range(0, pool).OrderBy(_ => rng.Next()).Take(TopK)).ToArray()).ToArray();

        // sender side: m_sizes and the stable expert order (gather: expert-ordered row -> slot), inverse
        int[][] mSizes = sel.Select(s => Enumerable.Range(0, Experts).Select(e => s.Count(x => x == e)).ToArray()).ToArray();
        int[][] gather = sel.Select(s => Enumerable.Range(0, s.Length).OrderBy(p => s[p]).ThenBy(p => p).ToArray()).ToArray();
        // count exchange: rank d receives from s the counts of d's experts
        var plans = new ExchangePlan[ranks];
        for (int d = 0; d < ranks; d++)
        {
            plans[d] = new ExchangePlan(partition, d);
            int el = partition.ExpertCount(d), first = partition.FirstExpert(d);
            int[] received = new int[ranks * el];
            for (int s = 0; s < ranks; s++)
            {
                (int offset, int length) = new ExchangePlan(partition, s).CountSlice(d);
                Assert.AreEqual((first, el), (offset, length), "the count message to d is d's expert range of m_sizes");
                Array.Copy(mSizes[s], offset, received, s * el, length);
            }
            plans[d].Build(mSizes[d], received, sel[d].Length);
        }
        // symmetric counts: what s sends d is what d receives from s
        for (int s = 0; s < ranks; s++)
            for (int d = 0; d < ranks; d++)
                Assert.AreEqual(plans[s].SendCounts[d], plans[d].ReceiveCounts[s], $"rows {s} -> {d}");

        // token exchange: each row carries (global token, its slot's expert, source rank, source expert-ordered row)
        var receive = new (int Token, int Expert, int Source, int SourceRow)[ranks][];
        for (int d = 0; d < ranks; d++)
        {
            receive[d] = new (int, int, int, int)[plans[d].TotalReceived];
            for (int s = 0; s < ranks; s++)
                for (int i = 0; i < plans[s].SendCounts[d]; i++)
                {
                    int row = plans[s].SendOffsets[d] + i, slot = gather[s][row];
                    receive[d][plans[d].ReceiveOffsets[s] + i] = (tokenBase[s] + slot / TopK, sel[s][slot], s, row);
                }
        }
        // local experts: walk expert-major through LocalGather, compute, scatter back to receive order
        var output = new int[ranks][];
        for (int d = 0; d < ranks; d++)
        {
            ExchangePlan p = plans[d];
            output[d] = Enumerable.Repeat(-1, p.TotalReceived).ToArray();
            Assert.AreEqual(p.TotalReceived, p.LocalGather.ToArray().Distinct().Count(), "the local gather is a permutation");
            for (int row = 0; row < p.TotalReceived; row++)
                Assert.AreEqual(row, p.LocalGather[p.LocalInverse[row]], "LocalInverse inverts LocalGather");
            int q = 0;
            for (int e = 0; e < p.LocalExperts; e++)
            {
                (int Source, int SourceRow) previous = (-1, -1);
                for (int i = 0; i < p.LocalExpertRows[e]; i++, q++)
                {
                    var row = receive[d][p.LocalGather[q]];
                    Assert.AreEqual(p.FirstLocalExpert + e, row.Expert, $"rank {d} local row {q} belongs to local expert {e}");
                    Assert.IsTrue((row.Source, row.SourceRow).CompareTo(previous) > 0, "within an expert: by source rank, then the source's order");
                    previous = (row.Source, row.SourceRow);
                    output[d][p.LocalGather[q]] = 1000 * row.Expert + row.Token;
                }
            }
            Assert.AreEqual(p.TotalReceived, q);
            if (ranks == 1) CollectionAssert.AreEqual(Enumerable.Range(0, q).ToArray(), p.LocalGather.ToArray(), "N = 1: identity");
        }
        // results back: receive slices -> the sender's expert order; combine reads U[inverse[p]]
        for (int s = 0; s < ranks; s++)
        {
            var u = Enumerable.Repeat(-1, sel[s].Length).ToArray();
            for (int d = 0; d < ranks; d++)
                for (int i = 0; i < plans[d].ReceiveCounts[s]; i++)
                    u[plans[s].SendOffsets[d] + i] = output[d][plans[d].ReceiveOffsets[s] + i];
            int[] inverse = new int[sel[s].Length];
            for (int row = 0; row < inverse.Length; row++) inverse[gather[s][row]] = row;
            for (int slot = 0; slot < sel[s].Length; slot++)
                Assert.AreEqual(1000 * sel[s][slot] + tokenBase[s] + slot / TopK, u[inverse[slot]], $"seed {seed}: rank {s} slot {slot}");
            Assert.AreEqual(sel[s].Length, plans[s].TotalSent);
        }
        if (routing == "skewed")
            for (int d = 1; d < ranks; d++) Assert.AreEqual(0, plans[d].TotalReceived, $"rank {d} holds no routed expert");
    }

    [TestMethod]
    public void Build_BadCounts_ThrowBeforeAnythingIsPlanned()
    {
        var plan = new ExchangePlan(new ExpertPartition(8, 2), rank: 1);
        int[] mSizes = [1, 0, 0, 0, 2, 0, 0, 1];
        int[] received = new int[2 * 4];
        Assert.AreEqual("expertRows", Assert.ThrowsExactly<ArgumentException>(() => plan.Build(mSizes.AsSpan(0, 7), received, 4)).ParamName);
        Assert.AreEqual("receivedCounts", Assert.ThrowsExactly<ArgumentException>(() => plan.Build(mSizes, received.AsSpan(1), 4)).ParamName);
        var sum = Assert.ThrowsExactly<ArgumentException>(() => plan.Build(mSizes, received, 6));
        Assert.AreEqual("tokenSlots", sum.ParamName);
        Assert.Contains("sums to 4", sum.Message);
        received[3] = -1;
        Assert.AreEqual("receivedCounts", Assert.ThrowsExactly<ArgumentException>(() => plan.Build(mSizes, received, 4)).ParamName);
        Assert.IsFalse(plan.IsBuilt);
        received[3] = 5;
        plan.Build(mSizes, received, 4);
        Assert.IsTrue(plan.IsBuilt);
        CollectionAssert.AreEqual(new[] { 1, 3 }, plan.SendCounts.ToArray(), "rank 0 holds experts 0-3, rank 1 experts 4-7");
        CollectionAssert.AreEqual(new[] { 0, 1 }, plan.SendOffsets.ToArray());
        CollectionAssert.AreEqual(new[] { 0, 0, 0, 5 }, plan.LocalExpertRows.ToArray());
    }

    [TestMethod]
    public void Build_Reused_GrowsAndShrinksTheRowsItReports()
    {
        var plan = new ExchangePlan(new ExpertPartition(4, 1), rank: 0);
        plan.Build([3, 3, 3, 3], [3, 3, 3, 3], 12);
        Assert.AreEqual(12, plan.LocalGather.Length);
        plan.Build([1, 0, 0, 1], [1, 0, 0, 1], 2);
        Assert.AreEqual(2, plan.TotalReceived);
        CollectionAssert.AreEqual(new[] { 0, 1 }, plan.LocalGather.ToArray());
    }
}
