using MoeNative.Ptx;

namespace MoeNative.Blocks;

/// <summary>
/// Options of <see cref="Qwen3MoeFusedBlock"/>; fixed for the lifetime of a block.
/// </summary>
/// <remarks>
/// <para><b>Permutations</b> (at most one of the two):
/// <see cref="PermuteX"/>: the first GEMM's dW gathers X rows while loading. (The forward fuses the token→expert-row
/// gather of X into the first GEMM's loads and the backward dX scatters to token-slot order in its stores either way;
/// without PermuteX the backward on the sm_80 path makes the <c>Xp [T*k,H]</c> copy its dW reads; the sm_90a dW
/// kernel gathers the rows itself.)
/// <see cref="PermuteY"/> fuses the expert-row→token-slot scatter into the second GEMM's stores,
/// and the second GEMM's backward dX/dW then load <c>dU</c> through the same permutation.</para>
/// <para><b>FuseMulPost</b> multiplies each row of the second GEMM by its routing weight in the epilogue.
/// The routing-weight gradient then cannot be formed, so it is inference only:
/// <see cref="Qwen3MoeFusedBlock.Backward{TElem}"/> throws <see cref="InvalidOperationException"/>.</para>
/// <para><b>InferenceOnly</b> says no backward will follow a forward: on the sm_90a path GEMM1's SwiGLU epilogue then
/// writes only A, never G1 (the backward's input); <see cref="Qwen3MoeFusedBlock.Backward{TElem}"/> throws
/// <see cref="InvalidOperationException"/>. Default false: every forward keeps what a backward needs.</para>
/// <para><b>Fused SwiGLU</b>: wherever the tuned/explicit/default config of GEMM1 is an sm_90a tile, the block runs
/// that tile with the SwiGLU epilogue instead of the GEMM plus SiluMulForward; elsewhere (sm_80, ForceSm80, SIMT) the
/// unfused pair. With <see cref="FuseSwiGluBackward"/>, GEMM2 dX on an sm_90a tile likewise runs the dSwiGLU epilogue
/// instead of the GEMM plus SiluMulBackward. Fused and unfused give the same bits for the same tile.</para>
/// <para><b>Kernel configs</b>: either <see cref="Autotune"/> (time at least
/// <see cref="MinimumAutotuneCandidates"/> candidates per GEMM on the first call of each shape class and keep the
/// fastest; the first call of a shape class synchronises the stream for timing) or explicit configs per GEMM layout
/// (<see cref="ForwardConfig"/>, <see cref="BackwardDataConfig"/>, <see cref="BackwardWeightConfig"/>; null = the
/// kernel family's default). Setting both is rejected.</para>
/// </remarks>
public sealed record FusedBlockOptions
{
    /// <summary>At least this many configs are timed per GEMM when <see cref="Autotune"/> is on.</summary>
    public const int MinimumAutotuneCandidates = 3;

    /// <summary>Gather X rows inside GEMM1's loads (no permuted copy of X).</summary>
    public bool PermuteX { get; init; }

    /// <summary>Scatter GEMM2's rows to token-slot order inside its stores (no separate unpermute).</summary>
    public bool PermuteY { get; init; }

    /// <summary>Scale GEMM2's rows by the routing weights in its epilogue. Inference only.</summary>
    public bool FuseMulPost { get; init; }

    /// <summary>
    /// GEMM2 dX on an sm_90a tile runs the dSwiGLU epilogue (reads G1, writes dG1; no dA, no SiluMulBackward launch).
    /// Default false: on an H200 it measured slower than the unfused pair (docs/PERF.md v13: 1369 vs 775 + 299 us at
    /// Qwen3-30B-A3B T = 16384; the epilogue's math is not overlapped with the next tile's wgmma).
    /// </summary>
    public bool FuseSwiGluBackward { get; init; }

    /// <summary>No backward follows a forward (serving): GEMM1's fused SwiGLU epilogue skips the G1 [T*k, 2I] write
    /// and Backward throws. Default false (training: G1 is kept for the backward).</summary>
    public bool InferenceOnly { get; init; }

    /// <summary>
    /// Which expert kernels the forward runs: <see cref="DecodeMode.Auto"/> (default) takes the decode kernels for
    /// T ≤ <see cref="FusedDecodePath.AutoMaxTokens"/>, <see cref="DecodeMode.Off"/> never,
    /// <see cref="DecodeMode.Always"/> at every T.
    /// </summary>
    public DecodeMode Decode { get; init; }

    /// <summary>Time the candidate configs of every GEMM on the first call of each shape class; keep the fastest.</summary>
    public bool Autotune { get; init; }

    /// <summary>Timed repetitions per candidate when autotuning (the fastest counts; a repetition of a launch under
    /// 0.1 ms is a batch of 4 back-to-back launches, so the host's launch cost is not timed). Default 3.</summary>
    public int AutotuneRepetitions { get; init; } = 3;

    /// <summary>
    /// Where autotune keeps its choices across processes (<see cref="TuningStore.Default"/> for the user's cache
    /// folder): choices stored for this card, driver, kernel text, dtype and dims are used without timing, new ones
    /// are stored. Null (the default) = in memory only. Needs <see cref="Autotune"/>.
    /// </summary>
    public TuningStore? TuningStore { get; init; }

    /// <summary>Config of the forward NT GEMMs (router logits, GEMM1, GEMM2); null = default. Excludes <see cref="Autotune"/>.</summary>
    public GemmConfig? ForwardConfig { get; init; }

    /// <summary>Config of the backward-data NN GEMMs (GEMM2 dX, GEMM1 dX, router dX); null = default.</summary>
    public GemmConfig? BackwardDataConfig { get; init; }

    /// <summary>Config of the backward-weight TN GEMMs (GEMM2 dW, GEMM1 dW, router dW); null = default.</summary>
    public GemmConfig? BackwardWeightConfig { get; init; }

    /// <summary>
    /// Config of individual GEMMs (e.g. only <see cref="FusedGemm.FirstForward"/>); wins over the per-layout configs
    /// above. Null or missing entries fall back to them. Excludes <see cref="Autotune"/>.
    /// </summary>
    public IReadOnlyDictionary<FusedGemm, GemmConfig>? GemmConfigs { get; init; }

    /// <summary>The explicit config of <paramref name="gemm"/>: its own entry, else its layout's, else null (default).</summary>
    public GemmConfig? ExplicitConfig(FusedGemm gemm)
    {
        if (GemmConfigs is not null && GemmConfigs.TryGetValue(gemm, out GemmConfig? own)) return own;
        return GemmTuner.LayoutOf(gemm) switch
        {
            GroupedGemmLayout.ForwardNT => ForwardConfig,
            GroupedGemmLayout.BackwardDataNN => BackwardDataConfig,
            _ => BackwardWeightConfig,
        };
    }

    /// <summary>Every option off, default kernel configs.</summary>
    public static FusedBlockOptions Default { get; } = new();

    /// <summary>
    /// Throws <see cref="ArgumentException"/> (parameter <paramref name="paramName"/>) when the options contradict
    /// each other: both permutes, autotune together with an explicit config, fewer than one autotune repetition.
    /// </summary>
    public void Validate(string paramName = "options")
    {
        if (PermuteX && PermuteY)
            throw new ArgumentException(
                "PermuteX and PermuteY cannot both be set: the first GEMM would gather its loads and the second scatter " +
                "its stores, leaving no expert-ordered layout for the backward. Choose one (or neither).", paramName);
        if (Autotune && (ForwardConfig is not null || BackwardDataConfig is not null || BackwardWeightConfig is not null
            || GemmConfigs is { Count: > 0 }))
            throw new ArgumentException(
                "Autotune and an explicit GemmConfig (ForwardConfig/BackwardDataConfig/BackwardWeightConfig/GemmConfigs) exclude each " +
                "other: either let the block time the candidates or name the configs.", paramName);
        if (TuningStore is not null && !Autotune)
            throw new ArgumentException(
                "A TuningStore keeps autotune's choices: set Autotune too (or leave TuningStore null).", paramName);
        if (AutotuneRepetitions < 1)
            throw new ArgumentException(
                $"AutotuneRepetitions must be at least 1, got {AutotuneRepetitions}.", paramName);
    }

    /// <summary>
    /// Throws <see cref="InvalidOperationException"/> when these options cannot run a backward (FuseMulPost: the
    /// routing weights were multiplied into GEMM2's output, so their gradient cannot be formed; InferenceOnly: the
    /// forward did not keep G1).
    /// </summary>
    public void EnsureTrainable()
    {
        if (InferenceOnly)
            throw new InvalidOperationException(
                "This block was built with InferenceOnly: its forward does not keep G1 (GEMM1's gate/up output) for a backward. " +
                "Build the block without InferenceOnly to train.");
        if (FuseMulPost)
            throw new InvalidOperationException(
                "This block was built with FuseMulPost (routing weights multiplied in GEMM2's epilogue), which is inference only: " +
                "the routing-weight gradient needs the unscaled GEMM2 output. Build the block without FuseMulPost to train.");
    }

    /// <summary>Short description for logs and test names, e.g. <c>permute_x autotune</c>.</summary>
    public string Describe()
    {
        var parts = new List<string>();
        if (PermuteX) parts.Add("permute_x");
        if (PermuteY) parts.Add("permute_y");
        if (FuseMulPost) parts.Add("fuse_mul_post");
        if (InferenceOnly) parts.Add("inference");
        if (FuseSwiGluBackward) parts.Add("fuse_dswiglu");
        if (Autotune) parts.Add(TuningStore is null ? "autotune" : "autotune stored");
        if (Decode != DecodeMode.Auto) parts.Add($"decode={Decode.ToString().ToLowerInvariant()}");
        if (ForwardConfig is not null) parts.Add($"fwd={ForwardConfig}");
        if (BackwardDataConfig is not null) parts.Add($"dx={BackwardDataConfig}");
        if (BackwardWeightConfig is not null) parts.Add($"dw={BackwardWeightConfig}");
        if (GemmConfigs is not null)
            foreach (var (gemm, config) in GemmConfigs.OrderBy(p => p.Key)) parts.Add($"{gemm}={config}");
        return parts.Count == 0 ? "plain" : string.Join(' ', parts);
    }
}
