using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Blocks.Benchmarking;

/// <summary>What to time: a config, a dtype, token counts, passes, implementations, and the replay policy.</summary>
public sealed record BlockBenchmarkOptions
{
    /// <summary>Layer shapes (H, I, E, k).</summary>
    public required MoeConfig Config { get; init; }

    /// <summary>Storage dtype. Default bf16.</summary>
    public ScalarType DType { get; init; } = ScalarType.BFloat16;

    /// <summary>Token counts T, one row set each (each T positive).</summary>
    public required IReadOnlyList<int> Tokens { get; init; }

    /// <summary>Also time forward+backward (rows with pass "fwd+bwd").</summary>
    public bool Backward { get; init; }

    /// <summary>Fused block options (default: autotune on).</summary>
    public FusedBlockOptions Fused { get; init; } = new() { Autotune = true };

    /// <summary>Replay the fused block from a captured CUDA graph (true) or with direct launches (false).</summary>
    public bool UseGraph { get; init; } = true;

    /// <summary>Also time the device-resident grouped block on cuBLAS (<see cref="CublasDeviceGroupedBlock"/>) for context.</summary>
    public bool IncludeCublasGrouped { get; init; } = true;

    /// <summary>Also time the host-orchestrated grouped reference on cuBLAS (<see cref="CublasGroupedBlock"/>; wall
    /// clock, weights travel over PCIe every call: seconds at Qwen3 dims). Off by default.</summary>
    public bool IncludeReference { get; init; }

    /// <summary>Skip the host reference above this T (it is host-orchestrated and slow). Default 1024.</summary>
    public int ReferenceMaxTokens { get; init; } = 1024;

    /// <summary>Untimed calls before timing (the first also autotunes). Default 3.</summary>
    public int WarmupReplays { get; init; } = 3;

    /// <summary>Timed replays are chosen so that they take about this long in total, within
    /// [<see cref="MinReplays"/>, <see cref="MaxReplays"/>]. Default 300 ms.</summary>
    public double TargetMillisecondsPerRow { get; init; } = 300;

    /// <summary>Default 10.</summary>
    public int MinReplays { get; init; } = 10;

    /// <summary>Default 2000.</summary>
    public int MaxReplays { get; init; } = 2000;

    /// <summary>With autotune on, first measure the time from a cold start to the first forward at the first T, with
    /// and without stored kernel choices (<see cref="ColdStartTiming"/>; two extra blocks, seconds). Default true.</summary>
    public bool MeasureColdStart { get; init; } = true;

    /// <summary>Seed of the weights; inputs use seed + T (fresh per T).</summary>
    public int Seed { get; init; } = 1234;

    /// <summary>
    /// When set, a file that receives the fused block's per-step breakdown (median ms of each launch step of the
    /// forward, and of the backward with <see cref="Backward"/>, timed with CUDA events between direct launches:
    /// each step then also pays its launch gap; the repetitions run back to back, so a first step does not wait on an idle
    /// GPU for the host). Default: the environment variable MOENATIVE_BENCH_BREAKDOWN.
    /// </summary>
    public string? BreakdownFile { get; init; } = Environment.GetEnvironmentVariable("MOENATIVE_BENCH_BREAKDOWN");

    /// <summary>Throws <see cref="ArgumentException"/> for an empty or non-positive token list or bad replay bounds.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Config);
        Config.Validate();
        _ = DType.SizeOf();
        ArgumentNullException.ThrowIfNull(Tokens);
        if (Tokens.Count == 0) throw new ArgumentException("At least one token count is needed.", nameof(Tokens));
        foreach (int t in Tokens)
            if (t <= 0) throw new ArgumentException($"Token counts must be positive, got {t}.", nameof(Tokens));
        if (MinReplays < 1 || MaxReplays < MinReplays)
            throw new ArgumentException($"Need 1 ≤ MinReplays ≤ MaxReplays, got {MinReplays} and {MaxReplays}.", nameof(MinReplays));
        if (WarmupReplays < 1) throw new ArgumentException($"WarmupReplays must be at least 1, got {WarmupReplays}.", nameof(WarmupReplays));
        ArgumentNullException.ThrowIfNull(Fused);
        Fused.Validate(nameof(Fused));
        if (Backward && Fused.FuseMulPost)
            throw new ArgumentException("FuseMulPost is inference only: it cannot be timed with the backward.", nameof(Fused));
        if (Backward && Fused.InferenceOnly)
            throw new ArgumentException("InferenceOnly blocks run no backward: time them without Backward.", nameof(Fused));
    }
}
