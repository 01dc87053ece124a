using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Routing;

/// <summary>Histogram + stable scatter against a host counting sort; exact integer equality.</summary>
[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class RoutingIndicesKernelTests
{
    public enum Spread { Uniform, OneExpert, SomeEmpty }

    private static int[] MakeSelection(int tk, int experts, Spread spread, int seed)
    {
        var rng = new HostRandom(seed);
        return spread switch
        {
            Spread.OneExpert => Enumerable.Repeat(experts - 1, tk).ToArray(),
            // only even experts get tokens: every odd expert is empty
            Spread.SomeEmpty => rng.Ints(tk, (experts + 1) / 2).Select(e => 2 * e).ToArray(),
            _ => rng.Ints(tk, experts),
        };
    }

    private static (int[] MSizes, int[] Gather, int[] Inverse) HostCountingSort(int[] sel, int experts)
    {
        var m = new int[experts];
        foreach (int e in sel) m[e]++;
        var next = new int[experts];
        for (int e = 1; e < experts; e++) next[e] = next[e - 1] + m[e - 1];
        var gather = new int[sel.Length];
        var inverse = new int[sel.Length];
        for (int p = 0; p < sel.Length; p++)
        {
            int r = next[sel[p]]++;
            gather[r] = p;
            inverse[p] = r;
        }
        return (m, gather, inverse);
    }

    [TestMethod]
    [DataRow(1, 1, Spread.Uniform)]
    [DataRow(8, 128, Spread.Uniform)]            // T=1, k=8
    [DataRow(56, 60, Spread.SomeEmpty)]
    [DataRow(4097, 3, Spread.Uniform)]           // one past a 4096-slot step
    [DataRow(8191, 128, Spread.OneExpert)]
    [DataRow(131072, 128, Spread.Uniform)]       // T=16384, k=8
    [DataRow(131072, 128, Spread.OneExpert)]     // all tokens on one expert
    [DataRow(131072, 128, Spread.SomeEmpty)]
    [DataRow(100000, 1000, Spread.Uniform)]
    [DataRow(0, 16, Spread.Uniform)]             // empty input still writes m_sizes = 0
    public void RoutingIndices_MatchHostStableCountingSort(int tk, int experts, Spread spread)
    {
        int[] sel = MakeSelection(tk, experts, spread, 3000 + tk + experts);
        var (m, gather, inverse) = HostCountingSort(sel, experts);

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dSel = new DeviceBuffer<int>(ctx, Math.Max(tk, 1));
        if (tk > 0) dSel.CopyFromHost(sel);
        using var dM = new DeviceBuffer<int>(ctx, experts);
        using var dGather = new DeviceBuffer<int>(ctx, Math.Max(tk, 1));
        using var dInverse = new DeviceBuffer<int>(ctx, Math.Max(tk, 1));
        dM.FillBytes(0xFF, stream);
        dGather.FillBytes(0xFF, stream);
        dInverse.FillBytes(0xFF, stream);
        ctx.Synchronize();

        MoeKernels kernels = MoeKernels.For(ctx);
        kernels.RoutingIndices(stream, dSel, dM, dGather, dInverse, tk, experts);
        stream.Synchronize();
        Check.Equal("m_sizes", dM.ToArray(), m);
        Check.Equal("gather", dGather.ToArray()[..tk], gather);
        Check.Equal("inverse", dInverse.ToArray()[..tk], inverse);

        // deterministic: a second run over re-poisoned outputs gives the same gather
        dGather.FillBytes(0xFF, stream);
        kernels.RoutingIndices(stream, dSel, dM, dGather, dInverse, tk, experts);
        stream.Synchronize();
        Check.Equal("gather (second run)", dGather.ToArray()[..tk], gather);
    }

    [TestMethod]
    public void RoutingIndices_RejectsBadArguments()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var sel = new DeviceBuffer<int>(ctx, 16);
        using var m = new DeviceBuffer<int>(ctx, 4);
        MoeKernels kernels = MoeKernels.For(ctx);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernels.RoutingIndices(stream, sel, m, sel, sel, 16, 0));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernels.RoutingIndices(stream, sel, m, sel, sel, -1, 4));
        var ex = Assert.ThrowsExactly<ArgumentException>(() => kernels.RoutingIndices(stream, sel, m, sel, sel, 16, 5));
        Assert.AreEqual("mSizes", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentException>(() => kernels.RoutingIndices(stream, sel, m, sel, sel, 17, 4));
        Assert.AreEqual("selected", ex.ParamName);
    }
}
