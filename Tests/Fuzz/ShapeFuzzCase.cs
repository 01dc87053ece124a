using System.Globalization;
using MoeNative.Reference;
using MoeNative.Interop;

namespace MoeNative.Tests.Fuzz;

/// <summary>How the tokens of a fuzz case are routed (forced on both implementations, so top-k ties never decide).</summary>
public enum FuzzRouting
{
    /// <summary>The reference's own router (softmax top-k of X·Wrᵀ).</summary>
    Router,
    /// <summary>k distinct experts per token, uniformly.</summary>
    Uniform,
    /// <summary>k distinct experts per token drawn from a Zipf-like law (expert e with weight 1/(e+1)^1.5): a few hot experts.</summary>
    Skewed,
    /// <summary>Every token picks the same k experts (k = 1: all tokens to one expert); every other expert is empty.</summary>
    OneExpert,
    /// <summary>Only about √E (at least k) experts are ever picked: many empty experts between used ones.</summary>
    FewExperts,
}

/// <summary>Size budget of a fuzz suite: elements of the weight tensor [E,I,H] and of the largest activation [T·k, max(H,2I)].</summary>
public sealed record FuzzBudget(long WeightElements, long ActivationElements, int MaxTokens, int MaxHidden);

/// <summary>
/// One random shape case, reproducible from its seed alone: E in 1..160, k in 1..min(E,10), H and I multiples of 8 or
/// not (half each), T in 0..5000 (skewed to small: decode, empty, odd), a dtype and a routing pattern, sized to the
/// budget. <see cref="ToString"/> says everything needed to rerun it (<c>MOENATIVE_FUZZ_SEED=seed</c>).
/// </summary>
public sealed record ShapeFuzzCase(int Seed, MoeConfig Config, int Tokens, ScalarType DType, FuzzRouting Routing)
{
    /// <summary>Environment variable: run only the fuzz case with this seed (the seed a failure printed).</summary>
    public const string SeedVariable = "MOENATIVE_FUZZ_SEED";

    private static readonly ScalarType[] DTypes = [ScalarType.BFloat16, ScalarType.Float16, ScalarType.Float32];

    /// <summary>The case of <paramref name="seed"/>.</summary>
    public static ShapeFuzzCase FromSeed(int seed, FuzzBudget budget)
    {
        var rng = new Random(seed);
        ScalarType dtype = DTypes[rng.Next(DTypes.Length)];
        int e = rng.NextDouble() < 0.15 ? rng.Next(1, 4) : rng.Next(1, 161);
        int k = rng.Next(1, Math.Min(e, 10) + 1);
        double u = rng.NextDouble();
        int tokens = u < 0.05 ? 0 : u < 0.35 ? rng.Next(1, 17) : u < 0.70 ? rng.Next(17, 513) : rng.Next(513, budget.MaxTokens + 1);
        long rows = Math.Max(1L, (long)tokens * k);
        int maxDim = (int)Math.Clamp(budget.ActivationElements / rows, 1, budget.MaxHidden);
        int h = Dim(rng, maxDim);
        int maxI = (int)Math.Clamp(Math.Min(budget.WeightElements / ((long)e * h), budget.ActivationElements / (2 * rows)), 1, budget.MaxHidden);
        int i = Dim(rng, maxI);
        var routing = (FuzzRouting)rng.Next(Enum.GetValues<FuzzRouting>().Length);
        bool norm = rng.NextDouble() < 0.8;
        var config = new MoeConfig(h, i, e, k, norm) { Name = $"fuzz-{seed}" };
        return new ShapeFuzzCase(seed, config.Validate(), tokens, dtype, routing);
    }

    /// <summary>A dimension in 1..max: half the time a multiple of 8 (when max ≥ 8), else any value.</summary>
    private static int Dim(Random rng, int max)
    {
        if (max >= 8 && rng.NextDouble() < 0.5) return 8 * rng.Next(1, max / 8 + 1);
        return rng.NextDouble() < 0.3 ? rng.Next(1, Math.Min(max, 24) + 1) : rng.Next(1, max + 1);
    }

    /// <summary>Random weights, X and dY of this case (representable in the dtype).</summary>
    public (MoeWeights Weights, float[] X, float[] DY) Data()
    {
        MoeWeights w = MoeWeights.Random(Config, Seed, DType);
        long th = (long)Tokens * Config.HiddenSize;
        return (w, TensorRandom.Normal(th, unchecked(Seed * 7 + 1), 1f, DType), TensorRandom.Normal(th, unchecked(Seed * 7 + 2), 1f, DType));
    }

    /// <summary>The forced routing of this case; null for <see cref="FuzzRouting.Router"/> (take the reference's own).</summary>
    public MoeRouting? ForcedRouting()
    {
        if (Routing == FuzzRouting.Router) return null;
        int e = Config.NumExperts, k = Config.TopK, t = Tokens;
        var rng = new Random(unchecked(Seed * 7 + 3));
        double[] law = Enumerable.Range(0, e).Select(x => Routing == FuzzRouting.Skewed ? 1.0 / Math.Pow(x + 1, 1.5) : 1.0).ToArray();
        int[] pool = Routing == FuzzRouting.FewExperts
            ? Enumerable.Range(0, e).OrderBy(_ => rng.Next()).Take(Math.Max(k, (int)Math.Ceiling(Math.Sqrt(e)))).ToArray()
            : Enumerable.Range(0, e).ToArray();
        int[] fixedSet = Enumerable.Range(0, e).OrderBy(_ => rng.Next()).Take(k).ToArray();
        var selected = new int[t * k];
        var weights = new float[t * k];
        for (int token = 0; token < t; token++)
        {
            int[] pick = Routing == FuzzRouting.OneExpert ? fixedSet : Draw(rng, pool, law, k);
            double sum = 0;
            for (int j = 0; j < k; j++) { weights[token * k + j] = (float)(0.05 + rng.NextDouble()); sum += weights[token * k + j]; }
            for (int j = 0; j < k; j++)
            {
                selected[token * k + j] = pick[j];
                weights[token * k + j] = (float)(weights[token * k + j] / sum);
            }
        }
        return new MoeRouting(t, k, selected, weights);
    }

    // k distinct experts from pool, each draw proportional to law[expert] among those not taken yet.
    private static int[] Draw(Random rng, int[] pool, double[] law, int k)
    {
        var left = new List<int>(pool);
        var pick = new int[k];
        for (int j = 0; j < k; j++)
        {
            double total = left.Sum(x => law[x]), r = rng.NextDouble() * total;
            int at = 0;
            while (at < left.Count - 1 && (r -= law[left[at]]) > 0) at++;
            pick[j] = left[at];
            left.RemoveAt(at);
        }
        return pick;
    }

    /// <summary>The seeds of a suite: <paramref name="count"/> consecutive seeds from <paramref name="first"/>, or only the
    /// seed in <see cref="SeedVariable"/> when set.</summary>
    public static IEnumerable<int> Seeds(int first, int count)
    {
        string? only = Environment.GetEnvironmentVariable(SeedVariable);
        if (!string.IsNullOrWhiteSpace(only) && int.TryParse(only, NumberStyles.Integer, CultureInfo.InvariantCulture, out int seed))
            return [seed];
        return Enumerable.Range(first, count);
    }

    /// <summary>
    /// Runs one shard of a fuzz suite: every case of <see cref="Seeds"/> (or the one in <see cref="SeedVariable"/>,
    /// in shard 0 only), collecting every failing case with its seed, then fails once listing them all.
    /// </summary>
    /// <param name="shard">Shard index; seeds <paramref name="firstSeed"/> + shard·<paramref name="casesPerShard"/> on.</param>
    /// <param name="firstSeed">Seed of the suite's first case.</param>
    /// <param name="casesPerShard">Cases per shard.</param>
    /// <param name="budget">The suite's size budget.</param>
    /// <param name="runCase">Runs a case; null when it passes, else what failed.</param>
    /// <param name="log">Where the counts and time go.</param>
    public static void RunShard(int shard, int firstSeed, int casesPerShard, FuzzBudget budget, Func<ShapeFuzzCase, string?> runCase, TestContext log)
    {
        ArgumentNullException.ThrowIfNull(runCase);
        ArgumentNullException.ThrowIfNull(log);
        int[] seeds = Seeds(firstSeed + shard * casesPerShard, casesPerShard).ToArray();
        if (shard > 0 && seeds.Length == 1) Assert.Inconclusive($"{SeedVariable} is set: the single case runs in shard 0.");
        var failures = new System.Text.StringBuilder();
        int failed = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        foreach (int seed in seeds)
        {
            ShapeFuzzCase fc = FromSeed(seed, budget);
            string? failure;
            try
            {
                failure = runCase(fc);
            }
            catch (Exception e) when (e is not OutOfMemoryException and not AssertInconclusiveException)
            {
                failure = $"{e.GetType().Name}: {e.Message}";
            }
            if (failure is null) continue;
            failed++;
            failures.Append('\n').Append(fc).Append("\n  ").Append(failure.Replace("\n", "\n  ", StringComparison.Ordinal));
        }
        log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{seeds.Length} cases, {failed} failed, {clock.Elapsed.TotalSeconds:0.0} s"));
        if (failed > 0) Assert.Fail($"{failed} of {seeds.Length} fuzz cases failed:{failures}");
    }

    /// <summary>The comparisons of <paramref name="log"/>: null when all pass, else the failure text.</summary>
    internal static string? Verdict(Blocks.ComparisonLog log, string context)
    {
        ArgumentNullException.ThrowIfNull(log);
        try
        {
            log.AssertAll(context);
            return null;
        }
        catch (AssertFailedException e)
        {
            return e.Message;
        }
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"seed {Seed}: E={Config.NumExperts} k={Config.TopK} H={Config.HiddenSize} I={Config.IntermediateSize} T={Tokens} {DType.ShortName()} routing={Routing} norm_topk_prob={Config.NormTopKProb} (rerun: {SeedVariable}={Seed})");
}
