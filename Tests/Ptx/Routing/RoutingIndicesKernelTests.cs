using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Routing;

/// <summary>Chunked histogram, scan and stable scatter against a host counting sort; exact integer equality.</summary>
[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class RoutingIndicesKernelTests
{
    public enum Spread { Uniform, OneExpert, SomeEmpty, SomeInvalid }

    private static int[] MakeSelection(int tk, int experts, Spread spread, int seed)
    {
        var rng = new HostRandom(seed);
        return spread switch
        {
            Spread.OneExpert => Enumerable.Repeat(experts - 1, tk).ToArray(),
            // only even experts get tokens: every odd expert is empty
            Spread.SomeEmpty => rng.Ints(tk, (experts + 1) / 2).Select(e => 2 * e).ToArray(),
            // ids -1 and E (out of range: not counted, their inverse entries left as they were) among valid ones
            Spread.SomeInvalid => rng.Ints(tk, experts + 2).Select(e => e - 1).ToArray(),
            _ => rng.Ints(tk, experts),
        };
    }

    private static (int[] MSizes, int[] Gather, int[] Inverse) HostCountingSort(int[] sel, int experts)
    {
        var m = new int[experts];
        foreach (int e in sel)
            if ((uint)e < (uint)experts) m[e]++;
        var next = new int[experts];
        for (int e = 1; e < experts; e++) next[e] = next[e - 1] + m[e - 1];
        var gather = new int[m.Sum()];
        var inverse = Enumerable.Repeat(-1, sel.Length).ToArray(); // the poison the test fills the outputs with
        for (int p = 0; p < sel.Length; p++)
        {
            if ((uint)sel[p] >= (uint)experts) continue;
            int r = next[sel[p]]++;
            gather[r] = p;
            inverse[p] = r;
        }
        return (m, gather, inverse);
    }

    // one chunk (TK <= 1024), several chunks with a short last one, the most chunks (64) of the largest chunk size,
    // one chunk per 1024 slots just below that, E in several scan passes (E > 1024) and with G > 1 groups per column
    [TestMethod]
    [DataRow(1, 1, Spread.Uniform)]
    [DataRow(8, 128, Spread.Uniform)]            // T=1, k=8
    [DataRow(56, 60, Spread.SomeEmpty)]
    [DataRow(1025, 3, Spread.Uniform)]           // one past a chunk
    [DataRow(4097, 3, Spread.Uniform)]
    [DataRow(8191, 128, Spread.OneExpert)]
    [DataRow(32768, 128, Spread.Uniform)]        // T=4096, k=8: 32 chunks
    [DataRow(65537, 128, Spread.Uniform)]        // chunk size past the minimum, short last chunk
    [DataRow(131072, 128, Spread.Uniform)]       // T=16384, k=8: 64 chunks
    [DataRow(131072, 128, Spread.OneExpert)]     // all tokens on one expert
    [DataRow(131072, 128, Spread.SomeEmpty)]
    [DataRow(131071, 100, Spread.SomeInvalid)]
    [DataRow(100000, 1000, Spread.Uniform)]
    [DataRow(50000, 2500, Spread.Uniform)]       // three scan passes
    [DataRow(20000, 12288, Spread.SomeEmpty)]    // the largest E
    [DataRow(0, 16, Spread.Uniform)]             // empty input still writes m_sizes = 0
    public void RoutingIndices_MatchHostStableCountingSort(int tk, int experts, Spread spread)
    {
        int seed = 3000 + tk + experts + (int)spread;
        Console.WriteLine($"seed {seed}");
        int[] sel = MakeSelection(tk, experts, spread, seed);
        var (m, gather, inverse) = HostCountingSort(sel, experts);

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dSel = new DeviceBuffer<int>(ctx, Math.Max(tk, 1));
        if (tk > 0) dSel.CopyFromHost(sel);
        using var dM = new DeviceBuffer<int>(ctx, experts);
        using var dGather = new DeviceBuffer<int>(ctx, Math.Max(tk, 1));
        using var dInverse = new DeviceBuffer<int>(ctx, Math.Max(tk, 1));
        using var dCounts = new DeviceBuffer<byte>(ctx, MoeKernels.RoutingIndicesScratchBytes(experts));
        MoeKernels kernels = MoeKernels.For(ctx);
        int[]? firstGather = null;
        for (int run = 0; run < 2; run++)
        {
            dM.FillBytes(0xFF, stream);
            dGather.FillBytes(0xFF, stream);
            dInverse.FillBytes(0xFF, stream);
            dCounts.FillBytes(0xFF, stream);
            kernels.RoutingIndices(stream, dSel, dM, dGather, dInverse, dCounts, tk, experts);
            stream.Synchronize();
            int[] actualGather = dGather.ToArray()[..gather.Length];
            Check.Equal($"m_sizes (run {run})", dM.ToArray(), m);
            Check.Equal($"gather (run {run})", actualGather, gather);
            Check.Equal($"inverse (run {run})", dInverse.ToArray()[..tk], inverse);
            // deterministic: the second run over re-poisoned outputs gives the same bits
            if (firstGather is null) firstGather = actualGather;
            else CollectionAssert.AreEqual(firstGather, actualGather, "gather differs between two runs");
        }
    }

    [TestMethod]
    [DataRow(0, 1024, 1)]
    [DataRow(1024, 1024, 1)]
    [DataRow(1025, 1024, 2)]
    [DataRow(65536, 1024, 64)]
    [DataRow(65537, 1280, 52)]
    [DataRow(131072, 2048, 64)]
    public void RoutingChunking_CoversTheSlotsInAtMost64Chunks(int tk, int chunkSlots, int chunks)
    {
        Assert.AreEqual((chunkSlots, chunks), MoeKernels.RoutingChunking(tk));
        Assert.IsTrue((long)chunks * chunkSlots >= tk && (long)(chunks - 1) * chunkSlots < Math.Max(tk, 1));
    }

    [TestMethod]
    public void RoutingIndices_RejectsBadArguments()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var sel = new DeviceBuffer<int>(ctx, 16);
        using var m = new DeviceBuffer<int>(ctx, 4);
        using var counts = new DeviceBuffer<byte>(ctx, MoeKernels.RoutingIndicesScratchBytes(4));
        MoeKernels kernels = MoeKernels.For(ctx);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernels.RoutingIndices(stream, sel, m, sel, sel, counts, 16, 0));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernels.RoutingIndices(stream, sel, m, sel, sel, counts, -1, 4));
        var ex = Assert.ThrowsExactly<ArgumentException>(() => kernels.RoutingIndices(stream, sel, m, sel, sel, counts, 16, 5));
        Assert.AreEqual("mSizes", ex.ParamName);
        using var shortCounts = new DeviceBuffer<int>(ctx, 3); // TK = 16 is one chunk: [1, E=4] needs 4 ints
        ex = Assert.ThrowsExactly<ArgumentException>(() => kernels.RoutingIndices(stream, sel, m, sel, sel, shortCounts, 16, 4));
        Assert.AreEqual("counts", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentException>(() => kernels.RoutingIndices(stream, sel, m, sel, sel, counts, 17, 4));
        Assert.AreEqual("selected", ex.ParamName);
    }
}
