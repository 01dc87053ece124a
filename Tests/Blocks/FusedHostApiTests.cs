using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Tests.Blocks;

/// <summary>The fused block's host forward infers T from hidden_states as the references do.</summary>
[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class FusedHostApiTests
{
    [TestMethod]
    public void Forward_InfersTokens_SameBitsAsGivingThem()
    {
        CudaContext context = GpuTest.RequireContext();
        MoeConfig config = MoeConfig.Preset("small");
        const int seed = 515, tokens = 24;
        Console.WriteLine($"seed {seed}");
        using var block = new Qwen3MoeFusedBlock(context, MoeWeights.Random(config, seed, ScalarType.BFloat16), ScalarType.BFloat16);
        float[] x = TensorRandom.Normal((long)tokens * config.HiddenSize, seed + 1, 1f, ScalarType.BFloat16); // [T,H]

        MoeIntermediates inferred = block.Forward(x);
        MoeIntermediates given = block.Forward(x, tokens);

        Assert.AreEqual(tokens, inferred.Tokens);
        CollectionAssert.AreEqual(given.Output, inferred.Output);
        CollectionAssert.AreEqual(given.RouterLogits, inferred.RouterLogits);
    }

    [TestMethod]
    public void Forward_NotAWholeNumberOfRows_NamesHiddenStates()
    {
        CudaContext context = GpuTest.RequireContext();
        MoeConfig config = MoeConfig.Preset("small");
        using var block = new Qwen3MoeFusedBlock(context, MoeWeights.Random(config, 1, ScalarType.BFloat16), ScalarType.BFloat16);

        ArgumentException e = Assert.Throws<ArgumentException>(() => block.Forward(new float[config.HiddenSize + 1]));
        Assert.AreEqual("hiddenStates", e.ParamName);
    }
}
