using MoeNative.Reference;
using MoeNative.Tests.Support;
using MoeNative.Interop;

namespace MoeNative.Tests.Reference;

/// <summary>Router semantics (softmax, top-k order and ties, renormalisation, cast) and the expert-ordered layout.</summary>
[TestClass]
public sealed class RoutingTests
{
    [TestMethod]
    [DataRow(true)]
    [DataRow(false)]
    public void RouterMatchesAFloat64ComputationWrittenHere(bool norm)
    {
        var c = new MoeConfig(8, 4, 5, 3, norm);
        float[] logits = [0.5f, -1f, 2f, 0.25f, 1f, /* token 1 */ 3f, 3f, -2f, 0f, 1f];
        MoeRouting r = MoeRouter.Route(logits, c, ScalarType.Float32, out float[] probs);
        // token 0: order by logit: e2 (2), e4 (1), e0 (0.5). token 1: e0 and e1 tie at 3 -> e0 first, then e1, e4.
        CollectionAssert.AreEqual(new[] { 2, 4, 0, 0, 1, 4 }, r.Selected);
        for (int t = 0; t < 2; t++)
        {
            double[] p = logits.Skip(t * 5).Take(5).Select(v => Math.Exp(v)).ToArray();
            double z = p.Sum();
            for (int e = 0; e < 5; e++) Assert.AreEqual(p[e] / z, probs[t * 5 + e], 1e-6, $"P[{t},{e}]");
            double s = r.Selected.Skip(t * 3).Take(3).Sum(e => p[e] / z);
            for (int j = 0; j < 3; j++)
            {
                double v = p[r.Selected[t * 3 + j]] / z;
                Assert.AreEqual(norm ? v / s : v, r.Weights[t * 3 + j], 1e-6, $"w[{t},{j}]");
            }
        }
    }

    [TestMethod]
    public void TiesGoToTheLowerExpertIdAndWeightsAreDescending()
    {
        var c = new MoeConfig(4, 4, 6, 4, NormTopKProb: false);
        float[] logits = [1f, 2f, 2f, 0f, 2f, 1f]; // three-way tie on 2 (ids 1, 2, 4), then 1 (ids 0, 5)
        MoeRouting r = MoeRouter.Route(logits, c, ScalarType.Float32, out _);
        CollectionAssert.AreEqual(new[] { 1, 2, 4, 0 }, r.Selected);
        for (int j = 1; j < 4; j++) Assert.IsLessThanOrEqualTo(r.Weights[j - 1], r.Weights[j], "descending weights");
    }

    [TestMethod]
    [DataRow(ScalarType.BFloat16)]
    [DataRow(ScalarType.Float16)]
    public void WeightsAreCastToTheStorageDtype(ScalarType dtype)
    {
        MoeConfig c = MoeConfig.Preset("small");
        float[] logits = TensorRandom.Normal(40L * c.NumExperts, 17);
        MoeRouting r = MoeRouter.Route(logits, c, dtype, out _);
        foreach (float w in r.Weights) Assert.AreEqual(StoragePrecision.Round(w, dtype), w, "representable in the dtype");
        MoeRouting r32 = MoeRouter.Route(logits, c, ScalarType.Float32, out _);
        CollectionAssert.AreEqual(r32.Selected, r.Selected, "the dtype does not change the selection (probabilities are fp32)");
    }

    [TestMethod]
    [DataRow(1, 8, 2, 1)]
    [DataRow(7, 8, 2, 2)]
    [DataRow(64, 32, 4, 3)]
    [DataRow(33, 16, 1, 4)]
    [DataRow(100, 128, 8, 5)]
    [DataRow(0, 4, 2, 6)]
    public void IndicesAreAStableInvertiblePermutation(int tokens, int experts, int k, int seed)
    {
        var c = new MoeConfig(8, 8, experts, k);
        MoeRouting routing = ReferenceTestData.RandomRouting(tokens, c, seed);
        RoutingIndices idx = routing.Indices(experts);
        int tk = tokens * k;
        Assert.AreEqual(tk, idx.TokenCounts.Sum(), "m_sizes sums to T*k");
        for (int e = 0; e < experts; e++)
            Assert.AreEqual(routing.Selected.Count(s => s == e), idx.TokenCounts[e], $"m_sizes[{e}] is the histogram");
        CollectionAssert.AreEquivalent(Enumerable.Range(0, tk).ToArray(), idx.Gather, "gather is a permutation");
        for (int p = 0; p < tk; p++) Assert.AreEqual(p, idx.Gather[idx.Inverse[p]], "gather ∘ inverse = id");
        for (int r = 0; r < tk; r++) Assert.AreEqual(r, idx.Inverse[idx.Gather[r]], "inverse ∘ gather = id");
        for (int r = 0; r < tk; r++)
        {
            int e = idx.ExpertOfRow(r);
            Assert.AreEqual(routing.Selected[idx.Gather[r]], e, $"row {r} belongs to its slot's expert");
            if (r > 0 && idx.ExpertOfRow(r - 1) == e) Assert.IsLessThan(idx.Gather[r], idx.Gather[r - 1], "stable: increasing slot within an expert");
            if (r > 0) Assert.IsLessThanOrEqualTo(e, idx.ExpertOfRow(r - 1), "experts in increasing id");
        }
    }

    [TestMethod]
    public void EmptyExpertsAndAllTokensToOneExpert()
    {
        int[] sel = [3, 3, 3, 3]; // k = 1, four tokens, all to expert 3 of 5
        RoutingIndices idx = RoutingIndices.FromSelected(sel, 1, 5);
        CollectionAssert.AreEqual(new[] { 0, 0, 0, 4, 0 }, idx.TokenCounts);
        CollectionAssert.AreEqual(new[] { 0, 0, 0, 0, 4, 4 }, idx.ExpertOffsets);
        CollectionAssert.AreEqual(new[] { 0, 1, 2, 3 }, idx.Gather);
        Assert.AreEqual(3, idx.ExpertOfRow(0));
        Assert.AreEqual(3, idx.ExpertOfRow(3));
    }

    [TestMethod]
    [DataRow(new[] { 0, 5 }, DisplayName = "id = E")]
    [DataRow(new[] { -1, 2 }, DisplayName = "negative id")]
    [DataRow(new[] { 1, 1 }, DisplayName = "same expert twice")]
    public void BadSelectionsAreRejectedWithTheTokenAndSlot(int[] selected)
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => RoutingIndices.FromSelected(selected, 2, 5));
        StringAssert.Contains(e.Message, "token 0");
    }
}
