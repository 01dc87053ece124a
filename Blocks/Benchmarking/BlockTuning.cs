using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Blocks.Benchmarking;

/// <summary>One kernel choice made (or found stored) by <see cref="BlockTuning.Run"/>.</summary>
/// <param name="Tokens">The T whose call made the choice.</param>
/// <param name="Gemm">Which GEMM of the block.</param>
/// <param name="ShapeClassTokens">The shape class the choice is stored under.</param>
/// <param name="Milliseconds">Best time of the chosen config when it was timed now; NaN when it came from the store.</param>
/// <param name="Config">The chosen tile config.</param>
/// <param name="CandidatesTimed">Configs timed for this GEMM now (0 when stored).</param>
/// <param name="FromStore">True when the choice was already stored.</param>
public sealed record TuneRow(int Tokens, FusedGemm Gemm, int ShapeClassTokens, GemmConfig Config, double Milliseconds,
    int CandidatesTimed, bool FromStore);

/// <summary>
/// Fills a <see cref="TuningStore"/> ahead of time (what <c>moenative tune</c> runs): one fused block with autotune
/// and the store, random weights and inputs, a forward (and backward) per token count; every GEMM of each shape
/// class is timed once, or taken from the store when it is already there.
/// </summary>
public static class BlockTuning
{
    /// <param name="context">The GPU.</param>
    /// <param name="config">Layer dims.</param>
    /// <param name="dtype">Storage dtype.</param>
    /// <param name="tokens">Token counts T, each positive; one shape class is tuned per distinct class.</param>
    /// <param name="backward">Also run (and tune) the backward GEMMs.</param>
    /// <param name="store">Where the choices go.</param>
    /// <param name="seed">Seed of the random weights and inputs.</param>
    /// <param name="onTokensDone">Called after each T with the number of token counts done so far.</param>
    public static IReadOnlyList<TuneRow> Run(CudaContext context, MoeConfig config, ScalarType dtype, IReadOnlyList<int> tokens,
        bool backward, TuningStore store, int seed, Action<int>? onTokensDone = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(store);
        foreach (int t in tokens)
        {
            if (t <= 0) throw new ArgumentOutOfRangeException(nameof(tokens), t, "Every T must be positive.");
            MoeLimits.CheckDeviceTokens(config, t, nameof(tokens));
        }
        var options = new FusedBlockOptions { Autotune = true, TuningStore = store };
        using var block = new Qwen3MoeFusedBlock(context, MoeWeights.Random(config, seed, dtype), dtype, options);
        var rows = new List<TuneRow>();
        var reported = new HashSet<(FusedGemm, int)>();
        for (int n = 0; n < tokens.Count; n++)
        {
            int t = tokens[n];
            long th = (long)t * config.HiddenSize;
            _ = block.Forward(TensorRandom.Normal(th, unchecked(seed + t), 1f, dtype), t);       // x [T,H]
            if (backward) _ = block.Backward(TensorRandom.Normal(th, unchecked(seed + 7 * t + 1), 1f, dtype)); // dY [T,H]
            foreach (((FusedGemm gemm, int shapeClass), GemmConfig? chosen) in block.ChosenConfigs.OrderBy(p => p.Key))
            {
                if (chosen is null || !reported.Add((gemm, shapeClass))) continue;
                GemmTiming[] timed = block.AutotuneTimings.Where(m => m.Gemm == gemm && m.ShapeClassTokens == shapeClass).ToArray();
                bool stored = block.StoredConfigsUsed.Contains((gemm, shapeClass));
                double ms = stored ? double.NaN : timed.Where(m => m.Config == chosen).Select(m => m.Milliseconds).DefaultIfEmpty(double.NaN).Min();
                rows.Add(new TuneRow(t, gemm, shapeClass, chosen, ms, stored ? 0 : timed.Length, stored));
            }
            onTokensDone?.Invoke(n + 1);
        }
        return rows;
    }
}
