using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Blocks;

/// <summary>
/// Checks of the expert-parallel block's construction and entry points, before any launch or exchange (testable
/// without a GPU or NCCL). Every failure is an <see cref="ArgumentException"/> naming the parameter.
/// </summary>
internal static class ExpertParallelChecks
{
    /// <summary>What the exchange fixes: no permute options (the exchange chooses the layouts), no FuseMulPost (the
    /// sender combines with its own routing weights), no tuning store (its key holds the full layer's dims), the
    /// grouped path (no decode kernels: every T runs the grouped GEMMs).</summary>
    public static void Options(ExpertParallelOptions options, string paramName)
    {
        ArgumentNullException.ThrowIfNull(options, paramName);
        FusedBlockOptions f = options.Kernels;
        f.Validate(paramName);
        if (f.PermuteX || f.PermuteY || f.FuseMulPost)
            throw new ArgumentException(
                "The expert-parallel block fixes the row layouts itself (rows travel in expert order and are combined by the sender): " +
                "leave PermuteX, PermuteY and FuseMulPost off in ExpertParallelOptions.Kernels.", paramName);
        if (f.TuningStore is not null)
            throw new ArgumentException("ExpertParallelOptions.Kernels.TuningStore is not supported (its key is the whole layer's dims); autotune in memory.", paramName);
        if (f.Decode == DecodeMode.Always)
            throw new ArgumentException("The expert-parallel block runs the grouped GEMMs at every T: Decode = Always is not supported.", paramName);
        NcclChecks.Timeout(options.ExchangeTimeout);
    }

    /// <summary>The communicator's size must split the config's experts (every rank at least one).</summary>
    public static ExpertPartition Partition(MoeConfig config, int ranks, string paramName)
    {
        if (ranks > config.NumExperts)
            throw new ArgumentException($"{ranks} ranks cannot split E = {config.NumExperts} experts (every rank holds at least one).", paramName);
        return new ExpertPartition(config.NumExperts, ranks);
    }

    /// <summary>Backward: dY and dX [T,H]; dRouter [E,H] (replicated); this rank's dGateUp [E_r,2I,H] and dDown [E_r,H,I].</summary>
    public static void BackwardShapes(MoeConfig c, int localExperts, int tokens, long dYLength, long dXLength, long routerLength,
        long gateUpLength, long downLength)
    {
        long th = (long)tokens * c.HiddenSize;
        long gateUp = (long)localExperts * 2 * c.IntermediateSize * c.HiddenSize, down = (long)localExperts * c.HiddenSize * c.IntermediateSize;
        BlockChecks.Length(dYLength, th, "dY", $"[T={tokens},H={c.HiddenSize}] (T of the last forward)");
        BlockChecks.Length(dXLength, th, "gradients.HiddenStates", $"[T={tokens},H={c.HiddenSize}]");
        BlockChecks.Length(routerLength, c.GateElements, "gradients.Gate", $"[E={c.NumExperts},H={c.HiddenSize}] (all experts: all-reduced)");
        BlockChecks.Length(gateUpLength, gateUp, "gradients.GateUpProj",
            $"[E_r={localExperts},2I={2 * c.IntermediateSize},H={c.HiddenSize}] (this rank's experts)");
        BlockChecks.Length(downLength, down, "gradients.DownProj",
            $"[E_r={localExperts},H={c.HiddenSize},I={c.IntermediateSize}] (this rank's experts)");
    }
}
