using MoeNative.Blocks;
using MoeNative.Blocks.Benchmarking;
using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Tests.Blocks;

/// <summary>Autotune with a <see cref="TuningStore"/>: stored choices are used without timing (CPU: the tuner; GPU: a
/// second block and the cold-start measurement).</summary>
[TestClass]
public sealed class StoredTuningTests
{
    private static readonly TuningContext s_context = new("Fake GPU sm_90 132 SMs", "12040", "0123456789abcdef",
        ScalarType.BFloat16, 256, 128, 16, 4);

    private DirectoryInfo _dir = null!;

    [TestInitialize]
    public void Setup() => _dir = Directory.CreateTempSubdirectory("moenative-stored-tuning-");

    [TestCleanup]
    public void Cleanup() => _dir.Delete(recursive: true);

    [TestMethod]
    public void Tuner_UsesAStoredChoiceThatIsACandidate_WithoutTiming()
    {
        GemmConfig stored = GemmConfig.Mma(64, 128, 3);
        var store = new TuningStore(_dir.FullName, m => throw new AssertFailedException("unexpected warning: " + m));
        store.Save(s_context, [new TunedChoice(FusedGemm.FirstForward, 128, stored, 0.05)]);
        var tuner = new GemmTuner(new FusedBlockOptions { Autotune = true, TuningStore = store }, s_context);

        GemmConfig chosen = tuner.Decide(FusedGemm.FirstForward, 128, [GemmConfig.Mma(128, 128, 4), stored],
            () => throw new AssertFailedException("a stored choice that is a candidate must not be timed"));

        Assert.AreEqual(stored, chosen);
        Assert.IsFalse(tuner.NeedsTuning(FusedGemm.FirstForward, 128));
        Assert.IsEmpty(tuner.Timings);
        Assert.IsTrue(tuner.FromStore.Contains((FusedGemm.FirstForward, 128)));
        Assert.AreEqual(stored, tuner.Chosen[(FusedGemm.FirstForward, 128)]);
    }

    [TestMethod]
    public void Tuner_WithoutAStore_OrForAnotherContext_SeesNoStoredChoice()
    {
        var store = new TuningStore(_dir.FullName);
        store.Save(s_context, [new TunedChoice(FusedGemm.FirstForward, 128, GemmConfig.Mma(64, 128, 3), 0.05)]);

        var other = new GemmTuner(new FusedBlockOptions { Autotune = true, TuningStore = store }, s_context with { Driver = "13000" });
        var none = new GemmTuner(new FusedBlockOptions { Autotune = true }, s_context);

        Assert.IsTrue(other.NeedsTuning(FusedGemm.FirstForward, 128));
        Assert.IsTrue(none.NeedsTuning(FusedGemm.FirstForward, 128));
        Assert.IsEmpty(other.FromStore);
    }

    [TestMethod]
    public void Options_StoreWithoutAutotune_Refused()
    {
        var options = new FusedBlockOptions { TuningStore = new TuningStore(_dir.FullName) };

        ArgumentException e = Assert.Throws<ArgumentException>(() => options.Validate());
        StringAssert.Contains(e.Message, "Autotune");
    }

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DataRow(ScalarType.BFloat16)]
    [DataRow(ScalarType.Float32)]
    public void SecondBlock_UsesEveryStoredChoice_SameOutputBits(ScalarType dtype)
    {
        CudaContext context = GpuTest.RequireContext();
        MoeConfig config = MoeConfig.Preset("small");
        const int seed = 4711, tokens = 96;
        Console.WriteLine($"seed {seed}, small, {dtype.ShortName()}, T={tokens}");
        MoeWeights weights = MoeWeights.Random(config, seed, dtype);
        float[] x = TensorRandom.Normal((long)tokens * config.HiddenSize, seed + 1, 1f, dtype); // [T,H]
        float[] dY = TensorRandom.Normal((long)tokens * config.HiddenSize, seed + 2, 1f, dtype); // [T,H]
        var options = new FusedBlockOptions { Autotune = true, TuningStore = new TuningStore(_dir.FullName) };

        MoeIntermediates firstOut, secondOut;
        MoeGradients firstGrad, secondGrad;
        IReadOnlyDictionary<(FusedGemm, int), GemmConfig?> firstChoices;
        using (var first = new Qwen3MoeFusedBlock(context, weights, dtype, options))
        {
            firstOut = first.Forward(x, tokens);
            firstGrad = first.Backward(dY);
            firstChoices = first.ChosenConfigs.ToDictionary(p => p.Key, p => p.Value);
            Assert.IsNotEmpty(first.AutotuneTimings, "the first block times the candidates");
            Assert.IsEmpty(first.StoredConfigsUsed);
        }
        Assert.HasCount(1, _dir.GetFiles("*.json"));
        using (var second = new Qwen3MoeFusedBlock(context, weights, dtype, options))
        {
            secondOut = second.Forward(x, tokens);
            secondGrad = second.Backward(dY);
            Assert.IsEmpty(second.AutotuneTimings, "nothing timed again");
            Assert.HasCount(firstChoices.Count, second.StoredConfigsUsed);
            CollectionAssert.AreEquivalent(firstChoices.ToArray(), second.ChosenConfigs.ToArray());
        }
        // same configs, deterministic kernels: the same bits
        CollectionAssert.AreEqual(firstOut.Output, secondOut.Output);
        CollectionAssert.AreEqual(firstGrad.HiddenStates, secondGrad.HiddenStates);
        CollectionAssert.AreEqual(firstGrad.GateProj, secondGrad.GateProj);
    }

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    public void ColdStart_SecondRunUsesEveryChoiceTheFirstTuned()
    {
        CudaContext context = GpuTest.RequireContext();
        MoeConfig config = MoeConfig.Preset("small");
        MoeWeights weights = MoeWeights.Random(config, 99, ScalarType.BFloat16);

        ColdStartTiming cold = ColdStartTiming.Measure(context, weights, ScalarType.BFloat16, new FusedBlockOptions(), 64, 99);
        Console.WriteLine(cold);

        Assert.AreEqual(64, cold.Tokens);
        Assert.IsGreaterThan(0, cold.TunedGemms);
        Assert.AreEqual(cold.TunedGemms, cold.StoredGemmsUsed);
        Assert.IsGreaterThan(0.0, cold.WithoutStoredMs);
        Assert.IsGreaterThan(0.0, cold.WithStoredMs);
    }
}
