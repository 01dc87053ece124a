using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;

public static class ReadmeSample
{
    public static float[] Run()
    {
        // The layer: a preset (qwen3-30b-a3b, qwen3-235b-a22b, tiny, ...) or a Hugging Face config.json.
        MoeConfig config = MoeConfig.Preset("tiny");
        // Weights as Hugging Face names them: gate.weight [E,H], experts.gate_up_proj [E,2I,H], experts.down_proj [E,H,I]
        // (random here; MoeCheckpoint.LoadWeights reads a checkpoint's layer).
        MoeWeights weights = MoeWeights.Random(config, seed: 1, ScalarType.BFloat16);
        int tokens = 8;
        float[] hiddenStates = TensorRandom.Normal((long)tokens * config.HiddenSize, seed: 2, 1f, ScalarType.BFloat16); // [T,H]
        float[] gradOutput = TensorRandom.Normal((long)tokens * config.HiddenSize, seed: 3, 1f, ScalarType.BFloat16);   // [T,H]

        // CPU: the Hugging Face per-expert loop, the oracle every fast path is tested against.
        var hf = new HfMoeReference(weights, ScalarType.BFloat16);
        MoeIntermediates forward = hf.Forward(hiddenStates);       // .Output [T,H], .RouterLogits [T,E], every intermediate
        MoeGradients grads = hf.Backward(forward, gradOutput);     // .HiddenStates, .Gate, .GateProj, .UpProj, .DownProj

        // GPU: the fused PTX block, autotuned, its kernel choices kept on disk for the next process.
        if (Gpu.IsAvailable)
        {
            using CudaContext context = CudaContext.Create(0);
            var options = new FusedBlockOptions { Autotune = true, TuningStore = TuningStore.Default() };
            using var block = new Qwen3MoeFusedBlock(context, weights, ScalarType.BFloat16, options);
            MoeIntermediates y = block.Forward(hiddenStates);
            MoeGradients g = block.Backward(gradOutput);
            Console.WriteLine($"fused: |y| = {y.Output.Length}, |dgate| = {g.Gate.Length}");
        }
        return [.. forward.Output, .. grads.HiddenStates];
    }
}
