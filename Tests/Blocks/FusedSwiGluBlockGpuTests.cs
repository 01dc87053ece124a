using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;
using MoeNative.Tests.Ptx.GroupedGemmTests;

namespace MoeNative.Tests.Blocks;

/// <summary>
/// The fused block on the sm_90a path with the SwiGLU / dSwiGLU epilogues (explicit sm_90a tiles for GEMM1 and
/// GEMM2 dX, so the path is taken at every T): every intermediate and gradient against the grouped reference on
/// cuBLAS, that the fused launches ran (and the SiluMul kernels did not), and the InferenceOnly forward. Needs a
/// compute capability 9.0 GPU. Filter: FullyQualifiedName~FusedSwiGlu.
/// </summary>
[TestClass]
[TestCategory(GpuTest.Category)]
[DoNotParallelize]
public sealed class FusedSwiGluBlockGpuTests
{
    private static FusedBlockOptions Sm90aOptions(bool permuteX, bool permuteY, int blockN, bool fuseBackward = true) => new()
    {
        PermuteX = permuteX, PermuteY = permuteY, FuseSwiGluBackward = fuseBackward,
        GemmConfigs = new Dictionary<FusedGemm, GemmConfig>
        {
            [FusedGemm.FirstForward] = GemmConfig.Wgmma(blockN, 4),
            [FusedGemm.SecondBackwardData] = GemmConfig.Wgmma(blockN, 4),
        },
    };

    [TestMethod]
    [DataRow("small", ScalarType.BFloat16, 128, false, false, 128, true)]
    [DataRow("small", ScalarType.Float16, 128, true, false, 256, true)]
    [DataRow("small", ScalarType.BFloat16, 77, false, true, 256, true)]
    [DataRow("unaligned", ScalarType.BFloat16, 65, false, false, 128, true)]
    [DataRow("unaligned", ScalarType.Float16, 33, false, true, 128, true)]
    [DataRow("small-k1", ScalarType.Float16, 200, false, false, 128, true)]
    [DataRow("small", ScalarType.BFloat16, 128, false, false, 256, false)]
    [DataRow("unaligned", ScalarType.Float16, 65, true, false, 128, false)]
    public void Sm90aFusedBlock_MatchesGroupedReference(string config, ScalarType dtype, int tokens, bool permuteX, bool permuteY, int blockN,
        bool fuseBackward)
    {
        CudaContext context = Sm90aGroupedGemmGpuTests.RequireHopper();
        MoeConfig c = BlockTestModels.Config(config);
        ReferenceRun grouped = BlockTestModels.Reference(context, "grouped", config, dtype, tokens);
        FusedBlockOptions options = Sm90aOptions(permuteX, permuteY, blockN, fuseBackward);
        using var block = new Qwen3MoeFusedBlock(BlockTestModels.DeviceWeights(context, config, dtype), options);
        var steps = new List<string>();
        block.StepProbe = (_, step) => steps.Add(step);

        MoeIntermediates fused = block.Forward(grouped.X, tokens, grouped.Forward.Routing, intermediates: true);
        MoeGradients grads = block.Backward(grouped.DY);

        CollectionAssert.Contains(steps, "gemm1_swiglu", $"the SwiGLU epilogue ran (steps: {string.Join(", ", steps)})");
        CollectionAssert.DoesNotContain(steps, "silu_mul");
        // the backward's SwiGLU step: the dSwiGLU epilogue (fuseBackward), else the routed kernel (no dU, bf16), else (fp16:
        // the reference's dU rounding) the combine backward and the SwiGLU kernel
        string swiGluStep = fuseBackward ? "bwd_gemm2_dx_dswiglu" : dtype == ScalarType.Float16 ? "bwd_silu_mul" : "bwd_silu_mul_routed";
        CollectionAssert.Contains(steps, swiGluStep, $"steps: {string.Join(", ", steps)}");
        foreach (string other in new[] { "bwd_gemm2_dx_dswiglu", "bwd_silu_mul", "bwd_silu_mul_routed" }.Where(x => x != swiGluStep))
            CollectionAssert.DoesNotContain(steps, other);
        if (swiGluStep == "bwd_silu_mul_routed") CollectionAssert.DoesNotContain(steps, "bwd_combine", "the routed backward needs no dU");
        else CollectionAssert.Contains(steps, "bwd_combine", "dU = w·dY feeds GEMM2 dX");
        MoeIntermediates r = grouped.Forward;
        var log = new ComparisonLog(dtype);
        log.Close("first_gemm", fused.FirstGemm, r.FirstGemm);
        log.Close("intermediate", fused.Intermediate, r.Intermediate);
        if (permuteY) log.Close("unpermuted (permute_y store)", fused.Unpermuted, r.Unpermuted);
        else log.Close("second_gemm", fused.SecondGemm, r.SecondGemm);
        log.Close("output", fused.Output, r.Output);
        ThreeWayTests.CompareGradients(log, c, grads, grouped.Grads, routerScale: null);
        log.AssertAll($"grouped-cublas vs fused sm90a swiglu {config} {dtype.ShortName()} T={tokens} {options.Describe()} ({grouped.Seeds})");
    }

    /// <summary>InferenceOnly skips G1 (reported empty) and gives the training forward's output bit for bit;
    /// its Backward throws before any launch.</summary>
    [TestMethod]
    [DataRow(ScalarType.BFloat16)]
    [DataRow(ScalarType.Float16)]
    public void InferenceOnly_SameOutputNoG1_BackwardThrows(ScalarType dtype)
    {
        CudaContext context = Sm90aGroupedGemmGpuTests.RequireHopper();
        const string config = "small";
        const int tokens = 96;
        (float[] x, float[] dY) = BlockTestModels.Inputs(config, dtype, tokens);
        Console.WriteLine($"input seed {BlockTestModels.InputSeed(config, dtype, tokens)}");
        using var training = new Qwen3MoeFusedBlock(BlockTestModels.DeviceWeights(context, config, dtype), Sm90aOptions(false, false, 128));
        MoeIntermediates trained = training.Forward(x, tokens, intermediates: true);
        using var serving = new Qwen3MoeFusedBlock(BlockTestModels.DeviceWeights(context, config, dtype),
            Sm90aOptions(false, false, 128) with { InferenceOnly = true });
        MoeIntermediates served = serving.Forward(x, tokens, intermediates: true);

        CollectionAssert.AreEqual(trained.Output, served.Output, "InferenceOnly changes no output bit");
        CollectionAssert.AreEqual(trained.Intermediate, served.Intermediate);
        Assert.IsEmpty(served.FirstGemm, "an InferenceOnly forward reports no G1");
        Assert.IsNotEmpty(trained.FirstGemm);
        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => serving.Backward(dY));
        StringAssert.Contains(ex.Message, "InferenceOnly");
    }
}
