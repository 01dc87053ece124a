using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>Argument validation of the grouped GEMMs, checked on the CPU through the planning step every call runs
/// before any launch (no device needed: pointers are fake, sizes known through <see cref="DeviceRange"/>).</summary>
[TestClass]
public sealed class GroupedGemmArgumentTests
{
    private const int Experts = 3, TopK = 2, Rows = 66, N = 136, K = 200;
    private static readonly (int, int) Sm90 = (9, 0);

    private static DeviceRange Buf(long bytes, ulong at = 0x10000) => new(at, bytes);

    private static GroupedRows RowsOf(int totalRows = Rows, int experts = Experts, int topK = TopK, ulong gather = 0x90000) =>
        new(0x80000, gather, totalRows, experts, topK);

    /// <summary>A forward call with every size exact; each test breaks one thing.</summary>
    private static GroupedGemm.GemmPlan? Forward(ScalarType dtype = ScalarType.BFloat16, GemmConfig? config = null,
        DeviceRange? a = null, DeviceRange? w = null, DeviceRange? c = null, DeviceRange? rowScale = null,
        GroupedRows? rows = null, int n = N, int k = K, RowSource aRows = RowSource.Identity, RowTarget cRows = RowTarget.Identity,
        (int, int)? cc = null)
    {
        int es = dtype.SizeOf();
        GroupedRows r = rows ?? RowsOf();
        return GroupedGemm.Plan(GroupedGemmLayout.ForwardNT, dtype, config, cc ?? Sm90, 132,
            a ?? Buf((long)r.TotalRows * k * es), w ?? Buf((long)r.Experts * n * k * es), c ?? Buf((long)r.TotalRows * n * es),
            rowScale ?? DeviceRange.Null, r, n, k, (int)aRows, (int)cRows);
    }

    [TestMethod]
    public void ValidForward_PlansTheRequestedSpecialisation()
    {
        GemmConfig cfg = GemmConfig.Mma(64, 128, 4);
        GroupedGemm.GemmPlan? plan = Forward(config: cfg);
        Assert.IsNotNull(plan);
        Assert.AreEqual(cfg, plan.Value.Spec.Config);
        Assert.AreEqual(GemmMath.MmaSm80, plan.Value.Spec.Math);
        Assert.IsGreaterThanOrEqualTo(1L, plan.Value.Tiles);
    }

    [TestMethod]
    [DataRow(ScalarType.BFloat16, 132, 200)]
    [DataRow(ScalarType.Float16, 136, 4)]
    [DataRow(ScalarType.BFloat16, 12, 72)]
    [DataRow(ScalarType.Float32, 6, 10)]
    [DataRow(ScalarType.Float32, 136, 200)]
    public void ShapesTheTensorCoresCannotTake_RunTheSimtKernel(ScalarType dtype, int n, int k)
    {
        GroupedGemm.GemmPlan? plan = Forward(dtype, config: dtype == ScalarType.Float32 ? null : GemmConfig.Mma(128, 128, 4), n: n, k: k);
        Assert.IsNotNull(plan);
        Assert.AreEqual(GemmMath.Ffma, plan.Value.Spec.Math, $"{dtype} N={n} K={k}");
        Assert.AreEqual(GemmConfig.Ffma64x64, plan.Value.Spec.Config);
    }

    [TestMethod]
    [DataRow(ScalarType.BFloat16)]
    [DataRow(ScalarType.Float16)]
    public void AlignedShapes_RunTheTensorCores_UnlessFfmaIsForced(ScalarType dtype)
    {
        Assert.AreEqual(GemmMath.MmaSm80, Forward(dtype)!.Value.Spec.Math);
        Assert.AreEqual(GemmMath.Ffma, Forward(dtype, config: GemmConfig.Ffma64x64)!.Value.Spec.Math);
    }

    [TestMethod]
    public void NegativeDims_AreRejected()
    {
        Assert.AreEqual("n", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Forward(n: -8)).ParamName);
        Assert.AreEqual("k", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Forward(k: -8)).ParamName);
        Assert.AreEqual("rows", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Forward(rows: RowsOf(experts: -1))).ParamName);
        Assert.AreEqual("rows", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Forward(rows: RowsOf(totalRows: -2))).ParamName);
        Assert.AreEqual("rows", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Forward(rows: RowsOf(topK: 0))).ParamName);
    }

    [TestMethod]
    public void EmptyProblems_ReturnWithoutAPlan()
    {
        Assert.IsNull(Forward(n: 0));
        Assert.IsNull(Forward(k: 0));
        Assert.IsNull(Forward(rows: RowsOf(totalRows: 0)));
        Assert.IsNull(Forward(rows: RowsOf(experts: 0)));
    }

    [TestMethod]
    public void WeightGradient_WithNoRows_StillWritesZeros()
    {
        var rows = RowsOf(totalRows: 0);
        GroupedGemm.GemmPlan? plan = GroupedGemm.Plan(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16, null, Sm90, 132,
            DeviceRange.Null, DeviceRange.Null, Buf((long)Experts * N * K * 2), DeviceRange.Null, rows, N, K, 0, 0);
        Assert.IsNotNull(plan, "dW of experts without rows must still be written (zeros)");
        Assert.IsGreaterThanOrEqualTo(1L, plan.Value.Tiles);
    }

    [TestMethod]
    public void NullOrUndersizedTensors_AreRejectedByName()
    {
        Assert.AreEqual("a", Assert.ThrowsExactly<ArgumentException>(() => Forward(a: DeviceRange.Null)).ParamName);
        var ex = Assert.ThrowsExactly<ArgumentException>(() => Forward(w: Buf((long)Experts * N * K * 2 - 2)));
        Assert.AreEqual("w", ex.ParamName);
        StringAssert.Contains(ex.Message, $"[E={Experts},N={N},K={K}]");
        Assert.AreEqual("c", Assert.ThrowsExactly<ArgumentException>(() => Forward(c: Buf(16))).ParamName);
        Assert.AreEqual("rows", Assert.ThrowsExactly<ArgumentException>(() => Forward(rows: new GroupedRows(0, 0, Rows, Experts, TopK))).ParamName);
    }

    [TestMethod]
    public void GatheredSides_NeedTheGatherIndex()
    {
        GroupedRows noGather = RowsOf(gather: 0);
        var ex = Assert.ThrowsExactly<ArgumentException>(() => Forward(rows: noGather, aRows: RowSource.Gather));
        StringAssert.Contains(ex.Message, "rows.Gather");
        Assert.ThrowsExactly<ArgumentException>(() => Forward(rows: noGather, cRows: RowTarget.Scatter));
        Assert.ThrowsExactly<ArgumentException>(() => Forward(rows: noGather, rowScale: Buf(Rows * 2)));
        Assert.IsNotNull(Forward(rows: noGather), "no gather needed when nothing is gathered");
    }

    [TestMethod]
    public void GatherToken_ReadsTokenRows_AndNeedsDivisibleRows()
    {
        // A holds T = R/k token rows: R*K elements would be too many to demand
        Assert.IsNotNull(Forward(aRows: RowSource.GatherToken, a: Buf((long)Rows / TopK * K * 2)));
        var ex = Assert.ThrowsExactly<ArgumentException>(() => Forward(aRows: RowSource.GatherToken, rows: RowsOf(totalRows: 65)));
        StringAssert.Contains(ex.Message, "multiple of rows.TopK");
    }

    [TestMethod]
    public void StagedRowTile_NeedsTwoKTiles_ToStageIn()
    {
        GemmConfig staged = GemmConfig.Wgmma(256, 4, staged: true);
        var ex = Assert.ThrowsExactly<ArgumentException>(() => Forward(config: staged, n: 256, k: 64));
        Assert.AreEqual("k", ex.ParamName);
        StringAssert.Contains(ex.Message, "K must be > 64; got K = 64");
        Assert.AreEqual(staged, Forward(config: staged, n: 256, k: 72)!.Value.Spec.Config);
        Assert.AreEqual(GemmConfig.Wgmma(256, 4), Forward(config: GemmConfig.Wgmma(256, 4), n: 256, k: 64)!.Value.Spec.Config, "register stores take K = 64");
        // NN (C [R,K] = A [R,N] · W[e]) reduces over N: the router's dX at E = 32 experts (N = 32, K = H = 256)
        var nn = Assert.ThrowsExactly<ArgumentException>(() => GroupedGemm.Plan(GroupedGemmLayout.BackwardDataNN, ScalarType.BFloat16, staged,
            Sm90, 132, Buf(Rows * 32 * 2), Buf((long)Experts * 32 * 256 * 2), Buf(Rows * 256 * 2), DeviceRange.Null, RowsOf(), 32, 256, 0, 0));
        Assert.AreEqual("n", nn.ParamName);
        StringAssert.Contains(nn.Message, "N must be > 64; got N = 32");
    }

    [TestMethod]
    public void RowScale_IsForwardOnly_AndSized()
    {
        Assert.AreEqual("rowScale", Assert.ThrowsExactly<ArgumentException>(() => Forward(rowScale: Buf(10))).ParamName);
        var ex = Assert.ThrowsExactly<ArgumentException>(() => GroupedGemm.Plan(GroupedGemmLayout.BackwardDataNN, ScalarType.BFloat16,
            null, Sm90, 132, Buf(Rows * N * 2), Buf((long)Experts * N * K * 2), Buf(Rows * K * 2), Buf(Rows * 2), RowsOf(), N, K, 0, 0));
        Assert.AreEqual("rowScale", ex.ParamName);
    }

    [TestMethod]
    public void PointersNotOnAnElement_AreRejected_And8ByteAlignedOnesFallBack()
    {
        var ex = Assert.ThrowsExactly<ArgumentException>(() => Forward(a: new DeviceRange(0x10001, DeviceRange.UnknownSize)));
        Assert.AreEqual("a", ex.ParamName);
        StringAssert.Contains(ex.Message, "2-byte aligned");
        Assert.ThrowsExactly<ArgumentException>(() => Forward(ScalarType.Float32, c: new DeviceRange(0x10002, DeviceRange.UnknownSize)));
        GroupedGemm.GemmPlan? plan = Forward(a: new DeviceRange(0x10008, DeviceRange.UnknownSize));
        Assert.AreEqual(GemmMath.Ffma, plan!.Value.Spec.Math, "cp.async needs 16-byte alignment: the SIMT kernel takes over");
    }

    [TestMethod]
    public void UnknownRowModes_AreRejected()
    {
        Assert.AreEqual("aRows", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Forward(aRows: (RowSource)7)).ParamName);
        Assert.AreEqual("cRows", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Forward(cRows: (RowTarget)2)).ParamName);
    }

    [TestMethod]
    public void InvalidConfig_AndOldDevices_AreRejected()
    {
        var ex = Assert.ThrowsExactly<ArgumentException>(() => Forward(config: new GemmConfig(128, 128, 16, 3, 8)));
        Assert.AreEqual("config", ex.ParamName);
        StringAssert.Contains(ex.Message, "BlockK must be 32");
        Assert.ThrowsExactly<ArgumentException>(() => Forward(ScalarType.Float32, config: GemmConfig.Mma(64, 64, 6)));
        Assert.ThrowsExactly<NotSupportedException>(() => Forward(cc: (7, 5)));
    }

    [TestMethod]
    public void DefaultConfig_UsesSmallRowTilesForDecode_AndTheLargestTileForBigBatches()
    {
        var decode = new GroupedRows(0x1000, 0x2000, 1 * 8, 128, 8);    // T = 1, k = 8, E = 128
        var prefill = new GroupedRows(0x1000, 0x2000, 16384 * 8, 128, 8);
        GemmConfig small = GroupedGemm.DefaultConfig(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, Sm90, 132, decode, 1536, 2048);
        GemmConfig large = GroupedGemm.DefaultConfig(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, Sm90, 132, prefill, 1536, 2048);
        Assert.AreEqual(64, small.BlockM, small.Name);
        Assert.AreEqual(GemmConfig.Mma(128, 128, 4), large);
    }

    [TestMethod]
    [DataRow(1, 1, 0)]
    [DataRow(16384, 128, 8)]
    [DataRow(128, 8, 2)]
    public void DefaultConfig_IsACandidate(int tokens, int experts, int topKMinus1)
    {
        int topK = topKMinus1 + 1;
        var rows = new GroupedRows(0x1000, 0x2000, tokens * topK, experts, topK);
        foreach (GroupedGemmLayout layout in Enum.GetValues<GroupedGemmLayout>())
            foreach (ScalarType dtype in new[] { ScalarType.BFloat16, ScalarType.Float16, ScalarType.Float32 })
            {
                GemmConfig cfg = GroupedGemm.DefaultConfig(layout, dtype, Sm90, 132, rows, 1536, 2048);
                Assert.Contains(cfg, GroupedGemm.Candidates(layout, dtype, Sm90));
            }
    }
}
