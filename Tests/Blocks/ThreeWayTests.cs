using System.Globalization;
using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Tests.Blocks;

/// <summary>
/// The three-way comparison of the original Qwen3-MoE suite, forward and backward, one data row per case:
/// (a) HF reference vs grouped reference on cuBLAS (sanity), (b) grouped reference on cuBLAS vs fused block, every
/// intermediate (isolates a failing stage), (c) HF reference vs fused block: output, router logits, the five gradients
/// and each expert's gradient slice (the test). Router logits are compared within tolerance; everything downstream
/// runs under SHARED routing (the reference's selection and weights are passed to the other side), because top-k is
/// discontinuous (docs/DESIGN.md). Rows: configs {small-k1, small, qwen3-30b-a3b} × dtype {bf16, fp16, fp32} ×
/// T {1, 7, 128, 1024} (× valid permute_x/permute_y × autotune off/on for the fused legs).
/// </summary>
[TestClass]
[TestCategory(GpuTest.Category)]
[DoNotParallelize]
public sealed class ThreeWayTests
{
    public static IEnumerable<object[]> ReferenceRows()
    {
        foreach (string config in BlockTestModels.Configs)
            foreach (ScalarType dtype in BlockTestModels.DTypes)
                foreach (int tokens in BlockTestModels.TokenCounts)
                    yield return [config, dtype, tokens];
    }

    public static IEnumerable<object[]> FusedRows()
    {
        foreach (string config in BlockTestModels.Configs)
            foreach (ScalarType dtype in BlockTestModels.DTypes)
                foreach (int tokens in BlockTestModels.TokenCounts)
                    foreach ((bool x, bool y) in BlockTestModels.Permutes)
                        foreach (bool autotune in new[] { false, true })
                            yield return [config, dtype, tokens, x, y, autotune];
    }

    public static string ReferenceRowName(System.Reflection.MethodInfo method, object[] row) =>
        string.Create(CultureInfo.InvariantCulture, $"{method.Name}({row[0]}, {((ScalarType)row[1]).ShortName()}, T={row[2]})");

    public static string FusedRowName(System.Reflection.MethodInfo method, object[] row) =>
        string.Create(CultureInfo.InvariantCulture,
            $"{method.Name}({row[0]}, {((ScalarType)row[1]).ShortName()}, T={row[2]}, permute_x={row[3]}, permute_y={row[4]}, autotune={row[5]})");

    // ---- (a) HF vs grouped on cuBLAS -------------------------------------------------------------------------------

    [TestMethod]
    [DynamicData(nameof(ReferenceRows), DynamicDataDisplayName = nameof(ReferenceRowName))]
    public void HfReference_Vs_GroupedCublas(string config, ScalarType dtype, int tokens)
    {
        CudaContext context = GpuTest.RequireContext();
        MoeConfig c = BlockTestModels.Config(config);
        ReferenceRun hf = BlockTestModels.Reference(context, "hf", config, dtype, tokens);
        ReferenceRun grouped = BlockTestModels.Reference(context, "grouped", config, dtype, tokens, hf.Forward.Routing, "hf");
        var log = new ComparisonLog(dtype);
        log.Close("router_logits", grouped.Forward.RouterLogits, hf.Forward.RouterLogits);
        log.CloseHfAccumulated("output", grouped.Forward.Output, hf.Forward.Output, c.TopK);
        CompareGradients(log, c, grouped.Grads, hf.Grads, RouterGradientScale.Compute(hf.Forward, hf.DY));
        log.AssertAll($"hf vs grouped-cublas {config} {dtype.ShortName()} T={tokens} ({hf.Seeds})");
    }

    // ---- (b) grouped on cuBLAS vs fused ----------------------------------------------------------------------------

    [TestMethod]
    [DynamicData(nameof(FusedRows), DynamicDataDisplayName = nameof(FusedRowName))]
    public void GroupedCublas_Vs_Fused_EveryIntermediate(string config, ScalarType dtype, int tokens, bool permuteX, bool permuteY, bool autotune)
    {
        CudaContext context = GpuTest.RequireContext();
        MoeConfig c = BlockTestModels.Config(config);
        // NOTE: at Qwen3 dims this leg checks the forward intermediates only (the backward is isolated on the
        // small configs and checked at Qwen3 dims against HF in (c)): keeps the GPU suite within minutes.
        bool backward = !BlockTestModels.IsLarge(config);
        ReferenceRun grouped = BlockTestModels.Reference(context, "grouped", config, dtype, tokens, backward: backward);
        var options = new FusedBlockOptions { PermuteX = permuteX, PermuteY = permuteY, Autotune = autotune };
        using var block = new Qwen3MoeFusedBlock(BlockTestModels.DeviceWeights(context, config, dtype), options);

        MoeIntermediates fused = block.Forward(grouped.X, tokens, grouped.Forward.Routing, intermediates: true);
        MoeGradients? fusedGrads = backward ? block.Backward(grouped.DY) : null;

        MoeIntermediates r = grouped.Forward;
        var log = new ComparisonLog(dtype);
        log.Close("router_logits", fused.RouterLogits, r.RouterLogits);
        log.Equal("token_counts", fused.TokenCounts, r.TokenCounts);
        log.Equal("gather", fused.Gather, r.Gather);
        log.Equal("inverse", fused.Indices.Inverse, r.Indices.Inverse);
        log.Close("routing_weights", fused.RoutingWeights, r.RoutingWeights);
        log.Close("first_gemm", fused.FirstGemm, r.FirstGemm);
        log.Close("intermediate", fused.Intermediate, r.Intermediate);
        if (permuteY) log.Close("unpermuted (permute_y store)", fused.Unpermuted, r.Unpermuted);
        else log.Close("second_gemm", fused.SecondGemm, r.SecondGemm);
        log.Close("output", fused.Output, r.Output);
        if (fusedGrads is not null) CompareGradients(log, c, fusedGrads, grouped.Grads, routerScale: null);
        log.AssertAll($"grouped-cublas vs fused {config} {dtype.ShortName()} T={tokens} {options.Describe()} ({grouped.Seeds})");
    }

    // ---- (c) HF vs fused ---------------------------------------------------------------------------------------------

    [TestMethod]
    [DynamicData(nameof(FusedRows), DynamicDataDisplayName = nameof(FusedRowName))]
    public void HfReference_Vs_Fused(string config, ScalarType dtype, int tokens, bool permuteX, bool permuteY, bool autotune)
    {
        CudaContext context = GpuTest.RequireContext();
        MoeConfig c = BlockTestModels.Config(config);
        ReferenceRun hf = BlockTestModels.Reference(context, "hf", config, dtype, tokens);
        var options = new FusedBlockOptions { PermuteX = permuteX, PermuteY = permuteY, Autotune = autotune };
        using var block = new Qwen3MoeFusedBlock(BlockTestModels.DeviceWeights(context, config, dtype), options);

        MoeIntermediates fused = block.Forward(hf.X, tokens, hf.Forward.Routing, intermediates: false);
        MoeGradients fusedGrads = block.Backward(hf.DY);

        var log = new ComparisonLog(dtype);
        log.Close("router_logits", fused.RouterLogits, hf.Forward.RouterLogits);
        log.CloseHfAccumulated("output", fused.Output, hf.Forward.Output, c.TopK);
        CompareGradients(log, c, fusedGrads, hf.Grads, RouterGradientScale.Compute(hf.Forward, hf.DY));
        log.AssertAll($"hf vs fused {config} {dtype.ShortName()} T={tokens} {options.Describe()} ({hf.Seeds})");
    }

    /// <summary>The five gradients: dX and d router whole; gate_proj, up_proj and down_proj expert by expert (in
    /// parallel) plus a whole-tensor summary line.</summary>
    /// <param name="log">Where the comparisons go.</param>
    /// <param name="c">The layer.</param>
    /// <param name="actual">Gradients under test.</param>
    /// <param name="expected">Reference gradients.</param>
    /// <param name="routerScale">Against the HF loop (whose forward rounds silu(gate) on its own, so its expert outputs
    /// U, and with them the router gradient's dot products, differ by rounding): the router gradient's first-order
    /// scale (<see cref="RouterGradientScale"/> of the HF side). Null between implementations with the same forward
    /// rounding (grouped vs fused, cuBLAS vs host): the strict scaled rule.</param>
    internal static void CompareGradients(ComparisonLog log, MoeConfig c, MoeGradients actual, MoeGradients expected, float[]? routerScale)
    {
        log.Close("grad_hidden_states", actual.HiddenStates, expected.HiddenStates);
        if (routerScale is null) log.Close("grad_gate (router)", actual.Gate, expected.Gate);
        else log.CloseRouterGradient("grad_gate (router)", actual.Gate, expected.Gate, routerScale);
        long ih = (long)c.IntermediateSize * c.HiddenSize;
        // gate_proj = rows 0..I-1 and up_proj = rows I..2I-1 of each expert's [2I,H] block of gate_up.
        log.ClosePerExpert("grad_gate_proj", actual.GateUpProj, expected.GateUpProj, c.NumExperts, ih, 0, 2 * ih);
        log.ClosePerExpert("grad_up_proj", actual.GateUpProj, expected.GateUpProj, c.NumExperts, ih, ih, 2 * ih);
        log.ClosePerExpert("grad_down_proj", actual.DownProj, expected.DownProj, c.NumExperts, ih);
    }
}
