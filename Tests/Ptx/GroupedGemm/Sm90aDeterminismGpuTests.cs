using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>
/// The sm_90a grouped GEMMs (forward NT, backward-data NN, backward-weight TN) are bitwise reproducible: a second eager
/// run, a run on a 3-CTA grid (every CTA walks many tiles) and two replays of a CUDA graph that captured the call all
/// give the first run's bytes (outputs poisoned with 0xFF before each). Correctness itself is the float64 tests'
/// job (Sm90aGroupedGemmGpuTests); these fail on any race, any order that depends on scheduling, or a graph whose
/// replay differs from the eager launch. Gathered row modes (permute_x / permute_y), bf16 and fp16, both tile widths.
/// Needs compute capability 9.0 (Inconclusive elsewhere). Filter: FullyQualifiedName~Sm90a.
/// </summary>
[TestClass]
public sealed class Sm90aDeterminismGpuTests
{
    // experts of 0, 1, 65, 300 and 129 rows; N, K multiples of 8 but of no tile
    private static readonly int[] MSizes = [300, 0, 1, 65, 129, 0, 17];
    private const int TopK = 2, N = 264, K = 200;

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DataRow(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, 128, 4, 1)]
    [DataRow(GroupedGemmLayout.ForwardNT, ScalarType.Float16, 256, 3, 1)]
    [DataRow(GroupedGemmLayout.BackwardDataNN, ScalarType.BFloat16, 256, 4, 1)]
    [DataRow(GroupedGemmLayout.BackwardDataNN, ScalarType.Float16, 128, 5, 1)]
    [DataRow(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16, 128, 4, 1)]
    [DataRow(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16, 256, 3, 1)]
    [DataRow(GroupedGemmLayout.BackwardWeightTN, ScalarType.Float16, 128, 5, 1)]
    [DataRow(GroupedGemmLayout.BackwardWeightTN, ScalarType.Float16, 256, 3, 1)]
    [DataRow(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, 256, 4, 2)]
    [DataRow(GroupedGemmLayout.BackwardDataNN, ScalarType.Float16, 128, 4, 2)]
    public void Sm90a_RunsAndGraphReplays_AreBitIdentical(GroupedGemmLayout layout, ScalarType dtype, int blockN, int stages, int cluster)
    {
        CudaContext ctx = Sm90aGroupedGemmGpuTests.RequireHopper();
        GemmConfig cfg = GemmConfig.Wgmma(blockN, stages, cluster);
        int seed = 500 + (int)layout * 10 + blockN / 128 + stages + 100 * (cluster - 1);
        var rng = new Random(seed);
        using var routing = new ShuffledGroupedRows(ctx, MSizes, TopK, rng);
        int rows = routing.Rows, experts = routing.Experts;
        GroupedRows grouped = routing.Grouped;

        using var stream = new CudaStream(ctx);
        // operands sized for the largest use of each: A [rows, max(N, K)]; W [E, N, K] (also X [rows / k, K] of TN); scale [rows]
        using DeviceBuffer<byte> a = HostData.Upload(ctx, dtype, HostData.Random(dtype, (long)rows * Math.Max(N, K), rng));
        using DeviceBuffer<byte> w = HostData.Upload(ctx, dtype, HostData.Random(dtype, (long)experts * N * K, rng));
        using DeviceBuffer<byte> scale = HostData.Upload(ctx, dtype, HostData.Random(dtype, rows, rng, 0.1, 1.0));
        long outElems = layout switch
        {
            GroupedGemmLayout.ForwardNT => (long)rows * N,
            GroupedGemmLayout.BackwardDataNN => (long)rows * K,
            _ => (long)experts * N * K,
        };
        using var c = new DeviceBuffer<byte>(ctx, outElems * dtype.SizeOf());

        void Call(GroupedGemm gemm, CudaStream s)
        {
            switch (layout)
            {
                case GroupedGemmLayout.ForwardNT: // permute_x + fuse_mul_post-like scale
                    gemm.ForwardNT(s, dtype, cfg, a, w, c, grouped, N, K, RowSource.GatherToken, RowTarget.Identity, scale);
                    break;
                case GroupedGemmLayout.BackwardDataNN: // dY gathered, dX scattered
                    gemm.BackwardDataNN(s, dtype, cfg, a, w, c, grouped, N, K, RowSource.Gather, RowTarget.Scatter);
                    break;
                default: // dY gathered, X gathered by token (permute_x)
                    gemm.BackwardWeightTN(s, dtype, cfg, a, w, c, grouped, N, K, RowSource.Gather, RowSource.GatherToken);
                    break;
            }
        }

        byte[] Run(Action<CudaStream> launch)
        {
            c.FillBytes(0xFF, stream);
            launch(stream);
            stream.Synchronize();
            return c.ToArray();
        }

        GroupedGemm full = GroupedGemm.For(ctx);
        var small = new GroupedGemm(ctx) { GridLimitForTesting = 3 };
        byte[] first = Run(s => Call(full, s));
        Assert.IsFalse(HostData.FromBytes(dtype, first).Any(float.IsNaN), $"seed {seed}: an output element was never written");
        AssertSame(first, Run(s => Call(full, s)), "second eager run", dtype);
        AssertSame(first, Run(s => Call(small, s)), "3-CTA grid", dtype);

        using CudaGraph graph = CudaGraph.Capture(stream, s => Call(full, s));
        for (int replay = 0; replay < 2; replay++)
            AssertSame(first, Run(s => graph.Launch(s)), $"graph replay {replay}", dtype);
    }

    private static void AssertSame(byte[] expected, byte[] actual, string what, ScalarType dtype)
    {
        int same = expected.AsSpan().CommonPrefixLength(actual);
        Assert.AreEqual(expected.Length, same, $"{what} differs from the first run at byte {same} (element {same / dtype.SizeOf()})");
    }
}
