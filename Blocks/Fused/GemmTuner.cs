using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Blocks;

/// <summary>The GEMMs of the fused block, each tuned (or configured) separately.</summary>
public enum FusedGemm
{
    /// <summary>Router logits L [T,E] = X [T,H] · Wr [E,H]ᵀ (NT, one group).</summary>
    RouterForward,
    /// <summary>GEMM1 G1 [TK,2I] = Xp · Wgu[e]ᵀ (NT, grouped).</summary>
    FirstForward,
    /// <summary>GEMM2 G2 [TK,H] = A · Wd[e]ᵀ (NT, grouped).</summary>
    SecondForward,
    /// <summary>dA [TK,I] = dG2 · Wd[e] (NN, grouped).</summary>
    SecondBackwardData,
    /// <summary>dWd [E,H,I] = Σ dG2ᵀ A (TN, grouped).</summary>
    SecondBackwardWeight,
    /// <summary>dXp [TK,H] = dG1 · Wgu[e] (NN, grouped).</summary>
    FirstBackwardData,
    /// <summary>dWgu [E,2I,H] = Σ dG1ᵀ Xp (TN, grouped).</summary>
    FirstBackwardWeight,
    /// <summary>dX_router [T,H] = dL · Wr (NN, one group).</summary>
    RouterBackwardData,
    /// <summary>dWr [E,H] = dLᵀ X (TN, one group).</summary>
    RouterBackwardWeight,
}

/// <summary>One autotune measurement: config, best time of the repetitions in ms (NaN when the candidate failed).</summary>
public sealed record GemmTiming(FusedGemm Gemm, int ShapeClassTokens, GemmConfig Config, double Milliseconds, string? Error);

/// <summary>
/// Kernel config per (GEMM, shape class): explicit from the options, or the fastest of the candidates, timed once
/// on the first call of the shape class with CUDA events (this synchronises the stream: the only host sync of the
/// block, and only on that first call; warm the block up before capturing it in a graph). With a
/// <see cref="FusedBlockOptions.TuningStore"/>, a choice stored for <paramref name="context"/> that is still among the
/// candidates is used without timing, and every new choice is stored.
/// </summary>
internal sealed class GemmTuner(FusedBlockOptions options, TuningContext? context = null)
{
    private readonly FusedBlockOptions _options = options;
    private readonly Dictionary<(FusedGemm, int), GemmConfig?> _chosen = new();
    private readonly HashSet<(FusedGemm, int)> _fromStore = [];
    private readonly List<GemmTiming> _timings = [];
    private readonly Dictionary<(FusedGemm, int), GemmConfig> _stored =
        options.Autotune && options.TuningStore is { } store && context is not null
            ? store.Load(context).ToDictionary(c => (c.Gemm, c.ShapeClassTokens), c => c.Config)
            : [];

    /// <summary>The (GEMM, shape class) pairs whose config came from the tuning store, not from timing.</summary>
    public IReadOnlySet<(FusedGemm Gemm, int ShapeClassTokens)> FromStore => _fromStore;

    /// <summary>Every autotune measurement so far, in order.</summary>
    public IReadOnlyList<GemmTiming> Timings => _timings;

    /// <summary>The configs chosen so far.</summary>
    public IReadOnlyDictionary<(FusedGemm Gemm, int ShapeClassTokens), GemmConfig?> Chosen => _chosen;

    public static GroupedGemmLayout LayoutOf(FusedGemm gemm) => gemm switch
    {
        FusedGemm.RouterForward or FusedGemm.FirstForward or FusedGemm.SecondForward => GroupedGemmLayout.ForwardNT,
        FusedGemm.SecondBackwardData or FusedGemm.FirstBackwardData or FusedGemm.RouterBackwardData => GroupedGemmLayout.BackwardDataNN,
        _ => GroupedGemmLayout.BackwardWeightTN,
    };

    /// <summary>True when <paramref name="gemm"/> in <paramref name="shapeClass"/> still has to be timed.</summary>
    public bool NeedsTuning(FusedGemm gemm, int shapeClass) => _options.Autotune && !_chosen.ContainsKey((gemm, shapeClass));

    /// <summary>
    /// Launches <paramref name="gemm"/> with its config, timing the candidates first when autotune needs it.
    /// <paramref name="launch"/> must be idempotent (it overwrites its output), as every candidate runs on the real data.
    /// </summary>
    public void Run(FusedGemm gemm, int shapeClass, CudaStream stream, Func<IReadOnlyList<GemmConfig>> candidates,
        Action<GemmConfig?> launch)
    {
        if (!_options.Autotune)
        {
            launch(Explicit(gemm));
            return;
        }
        if (!_chosen.TryGetValue((gemm, shapeClass), out GemmConfig? config))
        {
            IReadOnlyList<GemmConfig> offered = candidates();
            if (_stored.TryGetValue((gemm, shapeClass), out GemmConfig? stored) && offered.Contains(stored))
            {
                config = stored;
                _fromStore.Add((gemm, shapeClass));
            }
            else
            {
                (config, double ms) = Tune(gemm, shapeClass, stream, offered, launch);
                _options.TuningStore?.TrySave(context!, new TunedChoice(gemm, shapeClass, config, ms));
            }
            _chosen[(gemm, shapeClass)] = config;
        }
        launch(config);
    }

    private GemmConfig? Explicit(FusedGemm gemm) => _options.ExplicitConfig(gemm);

    private (GemmConfig Config, double Milliseconds) Tune(FusedGemm gemm, int shapeClass, CudaStream stream, IReadOnlyList<GemmConfig> candidates,
        Action<GemmConfig?> launch)
    {
        if (candidates.Count == 0)
            throw new InvalidOperationException($"Autotune of {gemm}: the grouped GEMM offers no candidate config.");
        using var start = new CudaEvent(stream.Context);
        using var end = new CudaEvent(stream.Context);
        GemmConfig? best = null;
        double bestMs = double.PositiveInfinity;
        List<string> errors = [];
        foreach (GemmConfig candidate in candidates)
        {
            double ms = double.PositiveInfinity;
            try
            {
                launch(candidate); // first launch JITs the specialisation and warms the caches
                for (int rep = 0; rep < _options.AutotuneRepetitions; rep++)
                {
                    start.Record(stream);
                    launch(candidate);
                    end.Record(stream);
                    end.Synchronize();
                    ms = Math.Min(ms, CudaEvent.ElapsedMilliseconds(start, end));
                }
                _timings.Add(new GemmTiming(gemm, shapeClass, candidate, ms, null));
            }
            catch (Exception ex) when (ex is CudaException or ArgumentException or NotSupportedException)
            {
                // NOTE: a candidate that does not fit this shape/dtype/card (JIT failure, launch rejected, shape
                // rejected) is skipped, not fatal. A sticky device error makes every later candidate fail too and
                // ends in the "every candidate failed" exception below, which lists each error.
                _timings.Add(new GemmTiming(gemm, shapeClass, candidate, double.NaN, ex.Message));
                errors.Add($"{candidate}: {ex.Message}");
                continue;
            }
            if (ms < bestMs)
            {
                bestMs = ms;
                best = candidate;
            }
        }
        return best is not null ? (best, bestMs) : throw new InvalidOperationException(
            $"Autotune of {gemm} (shape class T≤{shapeClass}): every candidate failed: {string.Join("; ", errors)}");
    }
}
