using System.Globalization;
using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Tests.Blocks;

/// <summary>
/// The fused block's decode kernels (<see cref="DecodeMode.Always"/>) against the grouped reference on cuBLAS, every
/// intermediate, at the decode token counts, each 16-bit dtype, under shared routing; the backward after a decode
/// forward; batch invariance (a token's output is bitwise the same alone as inside a batch) and run-to-run identity.
/// </summary>
[TestClass]
[TestCategory(GpuTest.Category)]
[DoNotParallelize]
public sealed class DecodePathTests
{
    private static readonly int[] DecodeTokens = [1, 2, 3, 7, 16, 33, 64];
    private static readonly ScalarType[] DecodeDTypes = [ScalarType.BFloat16, ScalarType.Float16];

    /// <summary>Option variants of the decode forward: plain, permute_x, permute_y (G2 stored in slot order), fuse_mul_post.</summary>
    private static readonly string[] Variants = ["plain", "permute_x", "permute_y", "fuse_mul_post"];

    public static IEnumerable<object[]> Rows()
    {
        foreach (string config in BlockTestModels.Configs)
            foreach (ScalarType dtype in DecodeDTypes)
                foreach (int tokens in DecodeTokens)
                    foreach (string variant in Variants)
                        yield return [config, dtype, tokens, variant];
    }

    public static string RowName(System.Reflection.MethodInfo method, object[] row) =>
        string.Create(CultureInfo.InvariantCulture, $"{method.Name}({row[0]}, {((ScalarType)row[1]).ShortName()}, T={row[2]}, {row[3]})");

    private static FusedBlockOptions Options(string variant, DecodeMode mode = DecodeMode.Always) => variant switch
    {
        "permute_x" => new FusedBlockOptions { PermuteX = true, Decode = mode },
        "permute_y" => new FusedBlockOptions { PermuteY = true, Decode = mode },
        "fuse_mul_post" => new FusedBlockOptions { FuseMulPost = true, Decode = mode },
        _ => new FusedBlockOptions { Decode = mode },
    };

    [TestMethod]
    [DynamicData(nameof(Rows), DynamicDataDisplayName = nameof(RowName))]
    public void GroupedCublas_Vs_Decode_EveryIntermediate(string config, ScalarType dtype, int tokens, string variant)
    {
        CudaContext context = GpuTest.RequireContext();
        MoeConfig c = BlockTestModels.Config(config);
        bool backward = !BlockTestModels.IsLarge(config) && variant != "fuse_mul_post";
        ReferenceRun grouped = BlockTestModels.Reference(context, "grouped", config, dtype, tokens, backward: backward);
        FusedBlockOptions options = Options(variant);
        using var block = new Qwen3MoeFusedBlock(BlockTestModels.DeviceWeights(context, config, dtype), options);

        MoeIntermediates fused = block.Forward(grouped.X, tokens, grouped.Forward.Routing, intermediates: true);
        MoeGradients? fusedGrads = backward ? block.Backward(grouped.DY) : null;

        MoeIntermediates r = grouped.Forward;
        var log = new ComparisonLog(dtype);
        log.Close("router_logits", fused.RouterLogits, r.RouterLogits);
        log.Equal("token_counts", fused.TokenCounts, r.TokenCounts);
        log.Equal("gather", fused.Gather, r.Gather);
        log.Close("first_gemm", fused.FirstGemm, r.FirstGemm);
        log.Close("intermediate", fused.Intermediate, r.Intermediate);
        if (variant == "permute_y") log.Close("unpermuted (slot-order store)", fused.Unpermuted, r.Unpermuted);
        else if (variant != "fuse_mul_post") log.Close("second_gemm", fused.SecondGemm, r.SecondGemm);
        log.Close("output", fused.Output, r.Output);
        if (fusedGrads is not null) ThreeWayTests.CompareGradients(log, c, fusedGrads, grouped.Grads, routerScale: null);
        log.AssertAll($"grouped-cublas vs decode {config} {dtype.ShortName()} T={tokens} {options.Describe()}");
    }

    /// <summary>
    /// With the decode kernels at every T (Always), a token's output alone (T = 1) is bitwise its row of a T = 64
    /// batch and of a T = 33 batch; two runs of the same batch are bitwise equal. Own routing (router GEMV and softmax
    /// are per token too).
    /// </summary>
    [TestMethod]
    [DataRow("qwen3-30b-a3b", ScalarType.BFloat16)]
    [DataRow("small", ScalarType.Float16)]
    public void Decode_IsBatchInvariant_AndRepeatable(string config, ScalarType dtype)
    {
        CudaContext context = GpuTest.RequireContext();
        MoeConfig c = BlockTestModels.Config(config);
        int h = c.HiddenSize;
        using var block = new Qwen3MoeFusedBlock(BlockTestModels.DeviceWeights(context, config, dtype),
            new FusedBlockOptions { Decode = DecodeMode.Always });
        (float[] x64, _) = BlockTestModels.Inputs(config, dtype, 64);

        float[] y64 = block.Forward(x64, 64).Output;
        float[] again = block.Forward(x64, 64).Output;
        CollectionAssert.AreEqual(y64, again, "two runs of the same T=64 batch differ");
        float[] y33 = block.Forward(x64.AsSpan(0, 33 * h).ToArray(), 33).Output;
        var failures = new List<string>();
        foreach (int t in new[] { 0, 1, 17, 32, 63 })
        {
            float[] alone = block.Forward(x64.AsSpan(t * h, h).ToArray(), 1).Output;
            int diff64 = CountDifferent(alone, y64.AsSpan(t * h, h));
            if (diff64 > 0) failures.Add($"token {t}: {diff64} of {h} outputs differ between T=1 and T=64");
            if (t < 33)
            {
                int diff33 = CountDifferent(alone, y33.AsSpan(t * h, h));
                if (diff33 > 0) failures.Add($"token {t}: {diff33} of {h} outputs differ between T=1 and T=33");
            }
        }
        Assert.IsEmpty(failures, string.Join("; ", failures));
    }

    /// <summary>
    /// Auto: T = 1, 2, 3 and 16 all take the decode kernels at Qwen3-30B-A3B (the 1- and 2-row entries, the one-wave
    /// column walk up to T = 4 and two columns per warp above) and the one-launch routing, so a token alone is bitwise
    /// its row of each batch.
    /// </summary>
    [TestMethod]
    public void DecodeAuto_IsBatchInvariant_UpToItsThreshold()
    {
        CudaContext context = GpuTest.RequireContext();
        const string config = "qwen3-30b-a3b";
        MoeConfig c = BlockTestModels.Config(config);
        int h = c.HiddenSize, t8 = FusedDecodePath.AutoMaxTokens(c);
        using var block = new Qwen3MoeFusedBlock(BlockTestModels.DeviceWeights(context, config, ScalarType.BFloat16));
        (float[] x, _) = BlockTestModels.Inputs(config, ScalarType.BFloat16, t8);
        var alone = new float[t8][];
        for (int t = 0; t < t8; t++) alone[t] = block.Forward(x.AsSpan(t * h, h).ToArray(), 1).Output;
        foreach (int tokens in new[] { 2, 3, t8 })
        {
            float[] batch = block.Forward(x.AsSpan(0, tokens * h).ToArray(), tokens).Output;
            for (int t = 0; t < tokens; t++)
                Assert.AreEqual(0, CountDifferent(alone[t], batch.AsSpan(t * h, h)), $"token {t}: T=1 and T={tokens} differ");
        }
    }

    /// <summary>
    /// Auto with its own routing (T &lt;= 16: the one-launch <c>moe_routing_decode</c>) against the same block given that
    /// routing back (the four routing kernels): every intermediate of the forward and the five gradients bitwise equal.
    /// </summary>
    [TestMethod]
    [DataRow("qwen3-30b-a3b", ScalarType.BFloat16, 1)]
    [DataRow("qwen3-30b-a3b", ScalarType.BFloat16, 8)]
    [DataRow("qwen3-30b-a3b", ScalarType.BFloat16, 16)]
    [DataRow("small", ScalarType.Float16, 5)]
    [DataRow("small", ScalarType.BFloat16, 11)]
    [DataRow("small-k1", ScalarType.BFloat16, 3)]
    public void OneLaunchRouting_IsBitwiseTheFourKernelRouting_ForwardAndBackward(string config, ScalarType dtype, int tokens)
    {
        CudaContext context = GpuTest.RequireContext();
        (float[] x, float[] dy) = BlockTestModels.Inputs(config, dtype, tokens);
        using var block = new Qwen3MoeFusedBlock(BlockTestModels.DeviceWeights(context, config, dtype));
        MoeIntermediates own = block.Forward(x, tokens, routing: null, intermediates: true);
        MoeGradients ownGrads = block.Backward(dy);
        MoeIntermediates given = block.Forward(x, tokens, own.Routing, intermediates: true);
        MoeGradients givenGrads = block.Backward(dy);

        var failures = new List<string>();
        void Same(string name, ReadOnlySpan<float> a, ReadOnlySpan<float> b)
        {
            int n = a.Length == b.Length ? CountDifferent(a, b) : -1;
            if (n != 0) failures.Add(n < 0 ? $"{name}: lengths {a.Length} vs {b.Length}" : $"{name}: {n} of {a.Length} differ");
        }
        Same("router_logits", own.RouterLogits, given.RouterLogits);
        Same("router_probs", own.RouterProbs, given.RouterProbs);
        CollectionAssert.AreEqual(own.TokenCounts, given.TokenCounts, "token_counts");
        CollectionAssert.AreEqual(own.Gather, given.Gather, "gather");
        CollectionAssert.AreEqual(own.Indices.Inverse, given.Indices.Inverse, "inverse");
        Same("first_gemm", own.FirstGemm, given.FirstGemm);
        Same("intermediate", own.Intermediate, given.Intermediate);
        Same("second_gemm", own.SecondGemm, given.SecondGemm);
        Same("output", own.Output, given.Output);
        Same("grad hidden_states", ownGrads.HiddenStates, givenGrads.HiddenStates);
        Same("grad gate", ownGrads.Gate, givenGrads.Gate);
        Same("grad gate_up_proj", ownGrads.GateUpProj, givenGrads.GateUpProj);
        Same("grad down_proj", ownGrads.DownProj, givenGrads.DownProj);
        Assert.IsEmpty(failures, string.Join("; ", failures));
    }

    private static int CountDifferent(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        int n = 0;
        for (int i = 0; i < a.Length; i++)
            if (BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i])) n++;
        return n;
    }

    /// <summary>Decode = Always on a dtype the decode kernels do not run (fp32) is refused when the block is built.</summary>
    [TestMethod]
    public void DecodeAlways_Fp32_IsRefusedAtConstruction()
    {
        CudaContext context = GpuTest.RequireContext();
        var ex = Assert.ThrowsExactly<ArgumentException>(() =>
            new Qwen3MoeFusedBlock(BlockTestModels.DeviceWeights(context, "small", ScalarType.Float32), new FusedBlockOptions { Decode = DecodeMode.Always }));
        StringAssert.Contains(ex.Message, "Decode = Always");
    }
}
