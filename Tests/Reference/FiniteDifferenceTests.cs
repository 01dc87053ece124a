using System.Globalization;
using MoeNative.Reference;
using MoeNative.Tests.Support;
using MoeNative.Interop;

namespace MoeNative.Tests.Reference;

/// <summary>
/// Float64 central finite differences of the reference forward against its manual backward, for each of the five
/// gradients. Loss = Σ dY ⊙ Y with a random dY. The expert selection is held fixed (top-k is piecewise constant) but
/// the routing weights are recomputed from the perturbed logits, so the router gradient (through w) is checked too.
/// </summary>
[TestClass]
public sealed class FiniteDifferenceTests
{
    private const double Step = 1e-5;
    private const double Atol = 1e-8, Rtol = 1e-5;
    private const int SamplesPerTensor = 40;

    [TestMethod]
    [DataRow("tiny", 1, "grouped", "topk", DisplayName = "tiny T=1 grouped (most experts empty)")]
    [DataRow("tiny", 1, "hf", "topk", DisplayName = "tiny T=1 hf")]
    [DataRow("tiny", 6, "grouped", "topk")]
    [DataRow("tiny", 6, "hf", "topk")]
    [DataRow("tiny-nonorm", 5, "grouped", "topk")]
    [DataRow("tiny-nonorm", 5, "hf", "topk")]
    [DataRow("tiny-k1", 4, "grouped", "topk")]
    [DataRow("tiny-k1", 4, "hf", "one-expert", DisplayName = "tiny-k1 all tokens to expert 0")]
    [DataRow("tiny", 5, "grouped", "one-expert", DisplayName = "tiny every token uses expert 0")]
    [DataRow("tiny", 4, "hf", "first-experts", DisplayName = "tiny experts 2..7 get no token")]
    [DataRow("unaligned", 3, "grouped", "topk")]
    [DataRow("unaligned", 3, "hf", "topk")]
    public void ManualBackwardMatchesCentralDifferences(string preset, int tokens, string impl, string routing)
    {
        MoeConfig c = MoeConfig.Preset(preset);
        MoeForwardKind kind = ReferenceTestData.Kind(impl);
        int seed = preset.Length * 100 + tokens;
        MoeWeights w32 = MoeWeights.Random(c, seed);
        var prm = new MoeParams<double>(c, ReferenceTestData.ToDouble(w32.Gate), ReferenceTestData.ToDouble(w32.GateUpProj), ReferenceTestData.ToDouble(w32.DownProj));
        double[] x = ReferenceTestData.RandomNormalDouble(tokens * c.HiddenSize, seed + 1);
        double[] dY = ReferenceTestData.RandomNormalDouble(tokens * c.HiddenSize, seed + 2);

        MoeState<double> s = MoeCore<double>.Forward(kind, HostGemm.Instance, prm, x, tokens, ScalarType.Float32,
            ReferenceTestData.Selection(routing, tokens, c));
        int[] selection = s.Selected;
        MoeGrads<double> g = MoeCore<double>.Backward(kind, HostGemm.Instance, prm, s, dY);

        double Loss()
        {
            MoeState<double> p = MoeCore<double>.Forward(kind, HostGemm.Instance, prm, x, tokens, ScalarType.Float32, (int[])selection.Clone());
            double sum = 0;
            for (int i = 0; i < dY.Length; i++) sum += dY[i] * p.Y[i];
            return sum;
        }

        var failures = new List<string>();
        int h = c.HiddenSize, inter = c.IntermediateSize;
        int[] active = Enumerable.Range(0, c.NumExperts).Where(e => s.Indices.TokenCounts[e] > 0).ToArray();
        Check("dX", x, g.X, Indices(x.Length, -1, [], seed + 3), Loss, failures);
        Check("dRouter", prm.Router, g.Router, Indices(prm.Router.Length, -1, [], seed + 4), Loss, failures);
        Check("dGateUp", prm.GateUp, g.GateUp, Indices(prm.GateUp.Length, 2 * inter * h, active, seed + 5), Loss, failures);
        Check("dDown", prm.Down, g.Down, Indices(prm.Down.Length, h * inter, active, seed + 6), Loss, failures);
        // gate_proj and up_proj are the two halves of gate_up_proj: check both halves were sampled.
        Assert.IsTrue(SampledBothHalves(prm.GateUp.Length, 2 * inter * h, active, seed + 5, inter * h),
            "the gate_up sample must include gate rows and up rows");
        if (failures.Count > 0) Assert.Fail($"{failures.Count} gradient entries disagree with finite differences:\n" + string.Join("\n", failures.Take(20)));
    }

    private static void Check(string name, double[] param, double[] analytic, int[] indices, Func<double> loss, List<string> failures)
    {
        Assert.HasCount(param.Length, analytic, $"{name} shape");
        foreach (int i in indices)
        {
            double saved = param[i];
            param[i] = saved + Step;
            double up = loss();
            param[i] = saved - Step;
            double down = loss();
            param[i] = saved;
            double fd = (up - down) / (2 * Step);
            if (!(Math.Abs(fd - analytic[i]) <= Atol + Rtol * Math.Max(Math.Abs(fd), 1e-3)))
                failures.Add(string.Create(CultureInfo.InvariantCulture, $"{name}[{i}]: finite difference {fd:G10}, backward {analytic[i]:G10}"));
        }
    }

    /// <summary>All indices of small tensors; else a seeded sample, half of it inside the active experts' slices.</summary>
    private static int[] Indices(int length, int perExpert, int[] active, int seed)
    {
        if (length <= SamplesPerTensor * 2) return Enumerable.Range(0, length).ToArray();
        int[] draws = TensorRandom.Integers(SamplesPerTensor, int.MaxValue, seed, stream: 9);
        var result = new int[SamplesPerTensor];
        for (int n = 0; n < SamplesPerTensor; n++)
        {
            if (n % 2 == 0 && active.Length > 0 && perExpert > 0)
            {
                int e = active[(draws[n] >> 8) % active.Length];
                result[n] = e * perExpert + draws[n] % perExpert;
            }
            else result[n] = draws[n] % length;
        }
        return result;
    }

    private static bool SampledBothHalves(int length, int perExpert, int[] active, int seed, int half)
    {
        int[] idx = Indices(length, perExpert, active, seed);
        return idx.Any(i => i % perExpert < half) && idx.Any(i => i % perExpert >= half);
    }
}
