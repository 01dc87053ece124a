using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>
/// The planning step every grouped-GEMM call runs (validation, default config, the cached specialisation) allocates
/// no managed memory once the specialisation exists; a failing check still says what was expected. CPU only
/// (fake pointers with known sizes).
/// </summary>
[TestClass]
public sealed class GroupedGemmAllocationTests
{
    private const int Experts = 4, TopK = 2, Rows = 64, N = 128, K = 96;
    private static readonly (int, int) Sm90 = (9, 0);
    private static readonly GroupedRows TheRows = new(0x80000, 0x90000, Rows, Experts, TopK);

    private static GroupedGemm.GemmPlan? Plan(GroupedGemmLayout layout, ScalarType dtype, GemmConfig? config, RowSource aRows, bool sm90a = false)
    {
        long es = dtype.SizeOf();
        bool weightGrad = layout == GroupedGemmLayout.BackwardWeightTN;
        long aLen = layout == GroupedGemmLayout.ForwardNT ? K : N;
        var a = new DeviceRange(0x100000, Rows * aLen * es);
        var second = weightGrad ? new DeviceRange(0x200000, Rows * K * es) : new DeviceRange(0x200000, Experts * N * K * es);
        long outRows = weightGrad ? Experts * N : Rows;
        long outCols = layout == GroupedGemmLayout.ForwardNT ? N : K;
        var output = new DeviceRange(0x400000, outRows * outCols * es);
        return GroupedGemm.Plan(layout, dtype, config, Sm90, 132, a, second, output, DeviceRange.Null, TheRows, N, K, (int)aRows, 0, sm90a);
    }

    public static IEnumerable<object?[]> Cases()
    {
        foreach (GroupedGemmLayout layout in Enum.GetValues<GroupedGemmLayout>())
        {
            yield return [layout, ScalarType.BFloat16, null];
            yield return [layout, ScalarType.Float16, GemmConfig.Mma(64, 64, 4)];
            yield return [layout, ScalarType.Float32, null];
        }
        // the sm_90a tiles (a 9.0 card; the launch adds only a stack-encoded tensor map)
        yield return [GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, GemmConfig.Wgmma(128, 4)];
        yield return [GroupedGemmLayout.BackwardDataNN, ScalarType.Float16, GemmConfig.Wgmma(256, 3)];
    }

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void WarmPlan_AllocatesNothing(GroupedGemmLayout layout, ScalarType dtype, GemmConfig? config)
    {
        bool sm90a = config?.Family == GemmMath.WgmmaSm90a;
        GroupedGemm.GemmPlan? first = Plan(layout, dtype, config, RowSource.Gather, sm90a);
        Assert.IsNotNull(first);
        long before = GC.GetAllocatedBytesForCurrentThread();
        GroupedGemm.GemmPlan? last = null;
        for (int i = 0; i < 100; i++) last = Plan(layout, dtype, config, RowSource.Gather, sm90a);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.AreEqual(0L, allocated, $"{layout} {dtype} {config?.Name ?? "default"}: 100 warm plans allocated {allocated} bytes");
        Assert.AreSame(first.Value.Spec, last!.Value.Spec, "the specialisation is built once and then cached");
    }

    [TestMethod]
    public void Create_ReturnsOneCachedSpec_PerKey_AndNeverCachesAnInvalidConfig()
    {
        GemmConfig cfg = GemmConfig.Mma(128, 64, 4);
        GroupedGemmSpec a = GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardDataNN, ScalarType.BFloat16, cfg);
        GroupedGemmSpec b = GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardDataNN, ScalarType.BFloat16, GemmConfig.Mma(128, 64, 4));
        Assert.AreSame(a, b, "an equal config finds the cached spec");
        Assert.AreNotSame(a, GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardDataNN, ScalarType.Float16, cfg));
        Assert.AreEqual(new GroupedGemmSpecKey(GemmMath.MmaSm80, GroupedGemmLayout.BackwardDataNN, ScalarType.BFloat16, cfg), a.Key);
        var bad = new GemmConfig(96, 64, 32, 4, 4);
        for (int i = 0; i < 2; i++)
            Assert.ThrowsExactly<ArgumentException>(() => GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, bad));
    }

    [TestMethod]
    public void FailingRangeCheck_StillNamesTheShape()
    {
        var ex = Assert.ThrowsExactly<ArgumentException>(() => GroupedGemm.Plan(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, null,
            Sm90, 132, new DeviceRange(0x100000, 16), new DeviceRange(0x200000, Experts * N * K * 2), new DeviceRange(0x400000, Rows * N * 2),
            DeviceRange.Null, TheRows, N, K, 0, 0));
        Assert.AreEqual("a", ex.ParamName);
        StringAssert.Contains(ex.Message, $"[{Rows},K={K}] BFloat16");
        StringAssert.Contains(ex.Message, "it has 16");
    }
}
