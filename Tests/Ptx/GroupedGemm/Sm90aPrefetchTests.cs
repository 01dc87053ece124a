using System.Text.RegularExpressions;
using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>The row-tiled sm_90a GEMMs' L2 prefetch ahead of the ring (Sm90aPrefetch): its environment override and
/// the PTX it puts in the producer, on the CPU.</summary>
[TestClass]
public sealed class Sm90aPrefetchTests
{
    private static readonly Regex TensorPrefetch = new(@"cp\.async\.bulk\.prefetch\.tensor\.3d\.L2\.global\.tile \[w_map, \{([a-z_0-9, ]+)\}\];");

    [TestMethod]
    [DataRow(null, 4, 4)]
    [DataRow(" ", 4, 4)]
    [DataRow("w=0,a=0", 0, 0)]
    [DataRow("w=8", 8, 4)]
    [DataRow("a=2", 4, 2)]
    [DataRow("a=1, w=16", 16, 1)]
    public void Parse_ReplacesTheDefaultsNamed(string? text, int weightTiles, int rowTiles) =>
        Assert.AreEqual(new Sm90aPrefetch(weightTiles, rowTiles), Sm90aPrefetch.Parse(text));

    [TestMethod]
    [DataRow("w=17")]
    [DataRow("w=-1")]
    [DataRow("b=2")]
    [DataRow("w")]
    [DataRow("w=x")]
    public void Parse_RejectsWithTheVariableNamed(string text)
    {
        FormatException e = Assert.ThrowsExactly<FormatException>(() => Sm90aPrefetch.Parse(text));
        StringAssert.StartsWith(e.Message, Sm90aPrefetch.EnvironmentVariable);
    }

    /// <summary>Every TMA load of a W stage gets one prefetch of the same box coordinates with k_coord replaced by
    /// pf_coord = k_coord + 64 D; nothing of the load's shared destination, barrier or multicast mask is left.</summary>
    [TestMethod]
    [DataRow(GroupedGemmLayout.ForwardNT, GroupedGemmEpilogue.Plain, 1, 1, "pf_coord, n0, e_cur")]
    [DataRow(GroupedGemmLayout.ForwardNT, GroupedGemmEpilogue.SwiGlu, 1, 2, "pf_coord, b_col, b_e")]
    [DataRow(GroupedGemmLayout.BackwardDataNN, GroupedGemmEpilogue.Plain, 1, 4, "b_col, pf_coord, e_cur")]
    [DataRow(GroupedGemmLayout.ForwardNT, GroupedGemmEpilogue.Plain, 2, 1, "pf_coord, b_col, e_cur")]
    [DataRow(GroupedGemmLayout.BackwardDataNN, GroupedGemmEpilogue.Plain, 2, 2, "b_col, pf_coord, e_cur")]
    [DataRow(GroupedGemmLayout.ForwardNT, GroupedGemmEpilogue.SwiGlu, 2, 1, "pf_coord, b_col, b_e")]
    public void WeightPrefetch_OnePerTmaLoadAtTheSameBox(GroupedGemmLayout layout, GroupedGemmEpilogue epilogue, int cluster, int boxes, string coords)
    {
        string ptx = GroupedGemmSm90aSpecs.Create(layout, ScalarType.BFloat16, GemmConfig.Wgmma(256, 4, cluster: cluster), epilogue,
            prefetch: new Sm90aPrefetch(3, 0)).SpecialisedPtx();
        int load = ptx.IndexOf("mbarrier.expect_tx.relaxed.cta", StringComparison.Ordinal), gather = ptx.IndexOf("P_GATHER:", load, StringComparison.Ordinal);
        string leader = ptx[load..gather];   // the leader's part of a stage: expect_tx, its loads, their prefetches
        MatchCollection prefetches = TensorPrefetch.Matches(leader);
        Assert.AreEqual(boxes, prefetches.Count, "one prefetch per box");
        Assert.AreEqual(boxes, Regex.Matches(leader, @"cp\.async\.bulk\.tensor\.3d\.shared::cluster").Count, "the loads stay");
        foreach (Match m in prefetches) Assert.AreEqual(coords, m.Groups[1].Value);
        int first = leader.IndexOf("add.u32 pf_coord, k_coord, 192;", StringComparison.Ordinal);
        Assert.IsTrue(first > leader.LastIndexOf("cp.async.bulk.tensor.3d.shared::cluster", StringComparison.Ordinal), "3 k-tiles of 64 ahead, after the loads");
        Assert.IsFalse(Regex.Replace(ptx, "//[^\n]*", "").Contains("prefetch.global.L2", StringComparison.Ordinal), "a=0: no row prefetch");
    }

    /// <summary>Each producer thread prefetches the 128 bytes D k-tiles ahead of its own table row (t_off, the address
    /// the thread wrote into the table), only inside the row (k_bytes) and only for a row inside the expert (t_off != 0).</summary>
    [TestMethod]
    public void RowPrefetch_TheThreadsTableRowInsideKAndTheExpert()
    {
        string ptx = GroupedGemmSm90aSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, GemmConfig.Wgmma(256, 3, staged: true),
            GroupedGemmEpilogue.SwiGlu, prefetch: new Sm90aPrefetch(0, 2)).SpecialisedPtx();
        string code = Regex.Replace(ptx, "//[^\n]*", "");
        Assert.AreEqual(1, Regex.Matches(code, @"@p_pf prefetch\.global\.L2 \[pf_src\];").Count);
        string block = code[code.IndexOf("add.s32 pf_byte, kbyte, 256;", StringComparison.Ordinal)..code.IndexOf("@p_pf prefetch", StringComparison.Ordinal)];
        StringAssert.Contains(block, "setp.lt.s32 p_pf, pf_byte, k_bytes;");
        StringAssert.Contains(block, "setp.ne.s64 p, t_off, 0;");
        StringAssert.Contains(block, "add.s64 pf_src, pf_src, t_off;");
        Assert.IsTrue(code.IndexOf("st.shared.s64 [utmp], t_off;", StringComparison.Ordinal) < code.IndexOf("add.s32 pf_byte", StringComparison.Ordinal),
            "t_off is the entry this thread wrote for row m0 + tid");
        Assert.IsFalse(TensorPrefetch.IsMatch(code), "w=0: no W prefetch");
    }

    [TestMethod]
    public void Off_LeavesNoPrefetchInTheKernel()
    {
        foreach (GroupedGemmLayout layout in new[] { GroupedGemmLayout.ForwardNT, GroupedGemmLayout.BackwardDataNN })
        {
            string code = Regex.Replace(GroupedGemmSm90aSpecs.Create(layout, ScalarType.Float16, GemmConfig.Wgmma(128, 4), prefetch: new Sm90aPrefetch(0, 0)).SpecialisedPtx(), "//[^\n]*", "");
            Assert.IsFalse(code.Contains("prefetch", StringComparison.Ordinal), layout.ToString());
        }
    }

    [TestMethod]
    public void WeightPrefetch_WithoutATmaLoad_Throws() =>
        Assert.ThrowsExactly<ArgumentException>(() => new Sm90aPrefetch(2, 0).WeightPrefetch("    add.u32 b_col, n0, 0;"));
}
