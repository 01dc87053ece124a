using System.Diagnostics;
using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Blocks.Benchmarking;

/// <summary>
/// Time from a cold start to the first forward's output on the host, twice: once with an empty tuning store (every
/// GEMM's candidates JIT-compiled and timed) and once with the choices that first run stored (only the chosen kernels
/// JIT-compiled). Each run has its own fresh <see cref="CudaContext"/> object (so its own module cache) and its own
/// block; the weights upload is not timed (it does not depend on tuning).
/// </summary>
/// <param name="Tokens">T of the first forward.</param>
/// <param name="WithoutStoredMs">Block construction + first host forward, empty store (autotune times every candidate).</param>
/// <param name="WithStoredMs">The same with the choices stored by the first run.</param>
/// <param name="TunedGemms">(GEMM, shape class) pairs timed in the first run.</param>
/// <param name="StoredGemmsUsed">Pairs taken from the store in the second run (equal to <paramref name="TunedGemms"/> when the store works).</param>
public sealed record ColdStartTiming(int Tokens, double WithoutStoredMs, double WithStoredMs, int TunedGemms, int StoredGemmsUsed)
{
    /// <summary>Measures both runs on the device of <paramref name="context"/>, the store in a temp folder removed afterwards.</summary>
    public static ColdStartTiming Measure(CudaContext context, MoeWeights weights, ScalarType dtype, FusedBlockOptions fused,
        int tokens, int seed)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(fused);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tokens);
        DirectoryInfo dir = Directory.CreateTempSubdirectory("moenative-coldstart-");
        try
        {
            FusedBlockOptions options = fused with { Autotune = true, TuningStore = new TuningStore(dir.FullName, _ => { }) };
            float[] x = TensorRandom.Normal((long)tokens * weights.Config.HiddenSize, unchecked(seed + tokens), 1f, dtype); // [T,H]
            (double without, int tuned, _) = FirstForward(context.Ordinal, weights, dtype, options, x, tokens);
            (double with, _, int stored) = FirstForward(context.Ordinal, weights, dtype, options, x, tokens);
            return new ColdStartTiming(tokens, without, with, tuned, stored);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static (double Ms, int Tuned, int Stored) FirstForward(int ordinal, MoeWeights weights, ScalarType dtype,
        FusedBlockOptions options, float[] x /*[T,H]*/, int tokens)
    {
        using CudaContext context = CudaContext.Create(ordinal);
        using Qwen3MoeDeviceWeights deviceWeights = Qwen3MoeDeviceWeights.Upload(context, weights, dtype);
        var clock = Stopwatch.StartNew();
        using var block = new Qwen3MoeFusedBlock(deviceWeights, options);
        _ = block.Forward(x, tokens); // returns after the stream finished
        double ms = clock.Elapsed.TotalMilliseconds;
        int stored = block.StoredConfigsUsed.Count;
        return (ms, block.ChosenConfigs.Count - stored, stored);
    }
}
