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
    /// <summary>dWr [E,H] = dLᵀ X (TN, one group): T in a shape class below <see cref="RouterRowSplit.MinSplitClass"/>, or shapes the split does not take.</summary>
    RouterBackwardWeight,
    /// <summary>The router dW's partials [G,E,H] f32, one per chunk of rows (TN with an f32 output, one group per chunk;
    /// summed after: <see cref="RouterRowSplit"/>).</summary>
    RouterBackwardWeightSplit,
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
    /// The config to launch <paramref name="call"/> with in <paramref name="shapeClass"/> (null: the grouped GEMM's
    /// default): the explicit option without autotune; else the one chosen for the shape class, timed here first on
    /// its first call: every candidate runs on the call's real data (its output is overwritten each time), with CUDA
    /// events on <paramref name="stream"/>, which synchronises. Later calls are a dictionary lookup (no allocation).
    /// </summary>
    public GemmConfig? Choose(GroupedGemm gemm, CudaStream stream, ScalarType dtype, int shapeClass, in FusedGemmCall call)
    {
        if (!_options.Autotune) return _options.ExplicitConfig(call.Gemm);
        if (_chosen.TryGetValue((call.Gemm, shapeClass), out GemmConfig? config)) return config;
        return ChooseFirst(gemm, stream, dtype, shapeClass, call);
    }

    // NOTE: its own method so that the closure below is allocated on a shape class's first call only (a lambda that
    // captures parameters allocates its closure on entry to the method that declares them, even when it returns early).
    private GemmConfig ChooseFirst(GroupedGemm gemm, CudaStream stream, ScalarType dtype, int shapeClass, FusedGemmCall call)
    {
        // NOTE: the candidate list depends on layout, dtype, output (f32 or dtype) and card, less the tiles the call's N / K rule out
        // (GemmConfig.ShapeProblem: a staged row tile needs two k-tiles); a further shape-aware filter (e.g. dropping 128-row
        // tiles for decode) belongs in FusedGemmCall.Candidates too.
        IReadOnlyList<GemmConfig> candidates = call.Candidates(gemm, dtype); // this instance's path (ForceSm80 honoured)
        return Decide(call.Gemm, shapeClass, candidates, () => Tune(gemm, stream, dtype, shapeClass, call, candidates));
    }

    /// <summary>
    /// The first choice of (<paramref name="which"/>, <paramref name="shapeClass"/>): the stored one when it is still
    /// among <paramref name="candidates"/> (no timing), else what <paramref name="tune"/> measures (then stored);
    /// recorded in <see cref="Chosen"/>.
    /// </summary>
    internal GemmConfig Decide(FusedGemm which, int shapeClass, IReadOnlyList<GemmConfig> candidates,
        Func<(GemmConfig Config, double Milliseconds)> tune)
    {
        GemmConfig config;
        if (_stored.TryGetValue((which, shapeClass), out GemmConfig? stored) && candidates.Contains(stored))
        {
            config = stored;
            _fromStore.Add((which, shapeClass));
        }
        else
        {
            (config, double ms) = tune();
            _options.TuningStore?.TrySave(context!, new TunedChoice(which, shapeClass, config, ms));
        }
        _chosen[(which, shapeClass)] = config;
        return config;
    }

    private (GemmConfig Config, double Milliseconds) Tune(GroupedGemm gemm, CudaStream stream, ScalarType dtype, int shapeClass,
        FusedGemmCall call, IReadOnlyList<GemmConfig> candidates)
    {
        FusedGemm which = call.Gemm;
        if (candidates.Count == 0)
            throw new InvalidOperationException($"Autotune of {which}: the grouped GEMM offers no candidate config.");
        // one chained event per timed batch (every candidate x every round) and the chain's first
        var marks = new CudaEvent[candidates.Count * _options.AutotuneRepetitions + 1];
        try
        {
            for (int m = 0; m < marks.Length; m++) marks[m] = new CudaEvent(stream.Context);
            return TuneWith(marks, gemm, stream, dtype, shapeClass, call, candidates);
        }
        finally
        {
            foreach (CudaEvent? mark in marks) mark?.Dispose();
        }
    }

    /// <summary>Launches of one timed batch when a candidate's launch is short (under <see cref="LongLaunchMs"/>): the
    /// host enqueues them while the GPU runs the previous ones, so the time between two events is GPU time, not the
    /// host's launch cost (a tensor-map encode, cuLaunchKernelEx) spent while the GPU waits.</summary>
    internal const int ShortLaunchBatch = 4;

    /// <summary>A launch at least this long (ms) is timed alone: the host's launch cost is a few microseconds.</summary>
    internal const double LongLaunchMs = 0.1;

    /// <summary>Launches per timed repetition of a candidate whose launch took <paramref name="launchMs"/>.</summary>
    internal static int LaunchesPerRepetition(double launchMs) => launchMs >= LongLaunchMs ? 1 : ShortLaunchBatch;

    /// <summary>The candidate timed at <paramref name="position"/> of round <paramref name="round"/> (of
    /// <paramref name="count"/> warm candidates): each round visits every candidate once, the order rotated by one per
    /// round, so no candidate always runs first or last of a round (where the card's clock and temperature differ).</summary>
    internal static int CandidateAt(int position, int round, int count) => (position + round) % count;

    /// <summary>Where candidate <paramref name="candidate"/> runs in round <paramref name="round"/>: the inverse of
    /// <see cref="CandidateAt"/>.</summary>
    internal static int PositionOf(int candidate, int round, int count) => ((candidate - round) % count + count) % count;

    /// <summary>
    /// Times every candidate in the same conditions: first each one is launched twice (the first launch JITs the
    /// specialisation and warms the caches; the second, timed alone, sizes its batches), then
    /// <see cref="FusedBlockOptions.AutotuneRepetitions"/> rounds, each a timed batch of every warm candidate in turn
    /// (<see cref="CandidateAt"/>), all queued between chained <paramref name="marks"/> before one synchronisation:
    /// the GPU runs the batches back to back, the host never in between, and the fastest batch per launch of each
    /// candidate counts. (Each candidate's repetitions right after its own JIT, one candidate after the other, let the
    /// card's state drift between candidates: at Qwen3-30B-A3B T = 16384 autotune kept GEMM1's 128x256 s4 tile in one
    /// process and s3_stg in another, 2.69 against 2.54 ms forward, while `bench --gemm` times s3_stg 10% faster,
    /// docs/PERF.md session 10. Timing each launch alone between a synchronised pair of events counted the host's
    /// launch cost as GPU time, docs/PERF.md v26.)
    /// </summary>
    private (GemmConfig Config, double Milliseconds) TuneWith(CudaEvent[] marks, GroupedGemm gemm, CudaStream stream,
        ScalarType dtype, int shapeClass, FusedGemmCall call, IReadOnlyList<GemmConfig> candidates)
    {
        FusedGemm which = call.Gemm;
        List<string> errors = [];
        var warm = new List<(GemmConfig Config, int Batch)>(candidates.Count);
        foreach (GemmConfig candidate in candidates)
        {
            try
            {
                call.Launch(gemm, stream, dtype, candidate);
                marks[0].Record(stream);
                call.Launch(gemm, stream, dtype, candidate);
                marks[1].Record(stream);
                marks[1].Synchronize();
                warm.Add((candidate, LaunchesPerRepetition(CudaEvent.ElapsedMilliseconds(marks[0], marks[1]))));
            }
            catch (Exception ex) when (ex is CudaException or ArgumentException or NotSupportedException)
            {
                // NOTE: a candidate that does not fit this shape/dtype/card (JIT failure, launch rejected, shape
                // rejected) is skipped, not fatal. A sticky device error makes every later candidate fail too and
                // ends in the "every candidate failed" exception below, which lists each error.
                _timings.Add(new GemmTiming(which, shapeClass, candidate, double.NaN, ex.Message));
                errors.Add($"{candidate}: {ex.Message}");
            }
        }
        if (warm.Count == 0)
            throw new InvalidOperationException(
                $"Autotune of {which} (shape class T≤{shapeClass}): every candidate failed: {string.Join("; ", errors)}");

        int rounds = _options.AutotuneRepetitions, n = warm.Count;
        marks[0].Record(stream);
        for (int round = 0; round < rounds; round++)
            for (int position = 0; position < n; position++)
            {
                (GemmConfig candidate, int batch) = warm[CandidateAt(position, round, n)];
                for (int b = 0; b < batch; b++) call.Launch(gemm, stream, dtype, candidate);
                marks[round * n + position + 1].Record(stream);
            }
        marks[rounds * n].Synchronize();

        GemmConfig? best = null;
        double bestMs = double.PositiveInfinity;
        for (int c = 0; c < n; c++)
        {
            double ms = double.PositiveInfinity;
            for (int round = 0; round < rounds; round++)
            {
                int mark = round * n + PositionOf(c, round, n) + 1; // the event after candidate c's batch of this round
                ms = Math.Min(ms, CudaEvent.ElapsedMilliseconds(marks[mark - 1], marks[mark]) / warm[c].Batch);
            }
            _timings.Add(new GemmTiming(which, shapeClass, warm[c].Config, ms, null));
            if (ms < bestMs)
            {
                bestMs = ms;
                best = warm[c].Config;
            }
        }
        return (best!, bestMs);
    }
}
