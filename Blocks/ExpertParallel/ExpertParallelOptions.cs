namespace MoeNative.Blocks;

/// <summary>Options of <see cref="ExpertParallelBlock"/>; fixed for the lifetime of a block.</summary>
public sealed record ExpertParallelOptions
{
    /// <summary>Kernel configs or autotune of the grouped GEMMs (as for the fused block). PermuteX, PermuteY,
    /// FuseMulPost, a TuningStore and Decode = Always are refused: the exchange fixes the layouts.</summary>
    public FusedBlockOptions Kernels { get; init; } = FusedBlockOptions.Default;

    /// <summary>
    /// How long one exchange (count exchange, token rows, results, gradients, the router all-reduce) may take before
    /// this rank aborts its communicator and throws <see cref="Interop.NcclException"/> (<c>Timeout</c>): a failed or
    /// missing rank surfaces as an error, never a hang. Default 60 s (also the first exchange's NCCL connection set-up).
    /// </summary>
    public TimeSpan ExchangeTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Stops this rank's waits (it aborts its communicator and throws <see cref="OperationCanceledException"/>),
    /// e.g. when another rank of the same process failed (<see cref="ExpertParallelGroup"/> does that).</summary>
    public CancellationToken Cancellation { get; init; }

    /// <summary>The defaults.</summary>
    public static ExpertParallelOptions Default { get; } = new();
}
