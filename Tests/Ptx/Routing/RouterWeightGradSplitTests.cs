using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Routing;

/// <summary>
/// The router weight gradient split over row chunks: the reduce kernel against a host sum in the same order (bitwise),
/// the device m_sizes table of <see cref="RouterRowSplit"/>, and the whole split (grouped TN GEMM per chunk + reduce)
/// against a float64 host dLᵀX, twice bitwise equal.
/// </summary>
[TestClass]
public sealed class RouterWeightGradSplitTests
{
    // S = 1 (a copy), S mod 4 = 1, 2, 3 and 0 (the four-chunk trips and the tail), n a multiple of 8 (16-byte path)
    // and not (element path), an unaligned partials base (element path).
    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DataRow(ScalarType.BFloat16, 1, 128, 2048, 0)]
    [DataRow(ScalarType.BFloat16, 17, 128, 2048, 0)]
    [DataRow(ScalarType.Float16, 6, 60, 264, 0)]
    [DataRow(ScalarType.Float32, 7, 3, 13, 0)]
    [DataRow(ScalarType.BFloat16, 33, 5, 11, 0)]
    [DataRow(ScalarType.Float16, 4, 8, 64, 3)]
    public void Reduce_EqualsHostSumInChunkOrder(ScalarType dtype, int splits, int experts, int hidden, int offset)
    {
        int seed = 8100 + splits * 31 + experts + hidden + offset;
        Console.WriteLine($"seed {seed}");
        var rng = new HostRandom(seed);
        long n = (long)experts * hidden;
        float[] partials = HostDtype.Rounded(dtype, rng.Normal(splits * n));
        var expected = new double[n];
        for (long i = 0; i < n; i++)
        {
            float sum = 0f;
            for (int s = 0; s < splits; s++) sum += partials[s * n + i]; // fp32, chunk order: the kernel's order
            expected[i] = HostDtype.Round(dtype, sum);
        }

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dPartials = DeviceTensor.Upload(ctx, dtype, partials, offset);
        MoeKernels kernels = MoeKernels.For(ctx);
        float[]? first = null;
        for (int run = 0; run < 2; run++)
        {
            using var dOut = DeviceTensor.Poisoned(ctx, stream, dtype, n);
            kernels.RouterWeightGradReduce(stream, dtype, dPartials.Range, dOut.Range, splits, experts, hidden);
            stream.Synchronize();
            float[] actual = dOut.Download();
            Check.Close($"dWr (run {run})", actual, expected, 0, 0); // same adds, same rounding: bit for bit
            if (first is null) first = actual;
            else CollectionAssert.AreEqual(first, actual, "two runs differ");
        }
    }

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    public void Reduce_RejectsBadArguments()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var partials = new DeviceBuffer<byte>(ctx, 3 * 4 * 8 * 2);
        using var output = new DeviceBuffer<byte>(ctx, 4 * 8 * 2);
        MoeKernels kernels = MoeKernels.For(ctx);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernels.RouterWeightGradReduce(stream, ScalarType.BFloat16, partials, output, 0, 4, 8));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernels.RouterWeightGradReduce(stream, ScalarType.BFloat16, partials, output, 3, 0, 8));
        var ex = Assert.ThrowsExactly<ArgumentException>(() => kernels.RouterWeightGradReduce(stream, ScalarType.BFloat16, partials, output, 4, 4, 8));
        Assert.AreEqual("partials", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentException>(() => kernels.RouterWeightGradReduce(stream, ScalarType.Float32, partials, output, 1, 4, 8));
        Assert.AreEqual("dRouter", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentException>(() => kernels.RouterWeightGradReduce(stream, ScalarType.BFloat16, partials, partials, 2, 4, 8));
        Assert.AreEqual("dRouter", ex.ParamName); // the output overlaps the partials
    }

    [TestMethod]
    [DataRow(1, 256, 1)]
    [DataRow(1024, 256, 5)]
    [DataRow(8192, 256, 33)]
    [DataRow(16384, 512, 33)]
    [DataRow(65536, 2048, 33)]
    public void Split_ChunkRowsAndGroups_FollowTheCapacity(int capacity, int chunkRows, int groups)
    {
        Assert.AreEqual(chunkRows, RouterRowSplit.ChunkRowsFor(capacity));
        Assert.AreEqual(groups, RouterRowSplit.GroupsFor(capacity));
    }

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DataRow(1024, 0)]
    [DataRow(1024, 255)]
    [DataRow(1024, 256)]
    [DataRow(1024, 700)]
    [DataRow(16384, 16384)]
    [DataRow(16384, 9999)]
    public void Split_DeviceMSizes_AreTheRemainderThenWholeChunks(int capacity, int tokens)
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var split = new RouterRowSplit(ctx, capacity);
        GroupedRows rows = split.Rows(tokens);
        int p = split.ChunkRows;
        Assert.AreEqual(1 + tokens / p, rows.Experts);
        Assert.IsTrue(rows.Experts <= split.Groups);
        var window = new int[rows.Experts];
        using var view = DeviceBuffer<int>.Wrap(ctx, rows.MSizes, rows.Experts); // a view of the table
        view.CopyToHost(window);
        Assert.AreEqual(tokens % p, window[0]);
        for (int j = 1; j < window.Length; j++) Assert.AreEqual(p, window[j], $"m_sizes[{j}]");
        Assert.AreEqual(tokens, window.Sum());
        Assert.AreEqual(split.Splits(tokens), tokens >= p);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => split.Rows(capacity + 1));
    }

    // dWr [E,H] = dLᵀ X over T rows: one chunk and a remainder of 0, several chunks with a remainder, Qwen3 E and a
    // row count past 16 chunks of the smallest chunk size.
    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DataRow(ScalarType.BFloat16, 256, 60, 264)]
    [DataRow(ScalarType.Float16, 1000, 60, 264)]
    [DataRow(ScalarType.BFloat16, 4500, 128, 136)]
    [DataRow(ScalarType.Float32, 700, 12, 40)]
    public void Split_GemmThenReduce_MatchesFloat64(ScalarType dtype, int tokens, int experts, int hidden)
    {
        int seed = 8300 + tokens + experts + hidden;
        Console.WriteLine($"seed {seed}");
        var rng = new HostRandom(seed);
        float[] dL = HostDtype.Rounded(dtype, rng.Normal((long)tokens * experts, 0.05));
        float[] x = HostDtype.Rounded(dtype, rng.Normal((long)tokens * hidden));
        var expected = new double[(long)experts * hidden];
        for (int t = 0; t < tokens; t++)
            for (int e = 0; e < experts; e++)
            {
                double g = dL[(long)t * experts + e];
                for (int h = 0; h < hidden; h++) expected[(long)e * hidden + h] += g * x[(long)t * hidden + h];
            }
        for (int i = 0; i < expected.Length; i++) expected[i] = HostDtype.Round(dtype, expected[i]);

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var split = new RouterRowSplit(ctx, BlockWorkspaceLayout.ShapeClassTokens(tokens));
        Assert.IsTrue(split.Splits(tokens));
        GroupedRows rows = split.Rows(tokens);
        using var dDL = DeviceTensor.Upload(ctx, dtype, dL);
        using var dX = DeviceTensor.Upload(ctx, dtype, x);
        using var dPartials = DeviceTensor.Poisoned(ctx, stream, dtype, (long)rows.Experts * experts * hidden);
        GroupedGemm gemm = GroupedGemm.For(ctx);
        MoeKernels kernels = MoeKernels.For(ctx);
        float[]? first = null;
        for (int run = 0; run < 2; run++)
        {
            using var dOut = DeviceTensor.Poisoned(ctx, stream, dtype, (long)experts * hidden);
            gemm.BackwardWeightTN(stream, dtype, null, dDL.Range, dX.Range, dPartials.Range, rows, experts, hidden, RowSource.Identity, RowSource.Identity);
            kernels.RouterWeightGradReduce(stream, dtype, dPartials.Range, dOut.Range, rows.Experts, experts, hidden);
            stream.Synchronize();
            float[] actual = dOut.Download();
            // the partials are rounded once each before the sum: twice the one-rounding tolerance
            Check.Close($"dWr (run {run})", actual, expected, 2 * Check.Tol(dtype), 2 * Check.Tol(dtype));
            if (first is null) first = actual;
            else CollectionAssert.AreEqual(first, actual, "two runs differ");
        }
    }
}
