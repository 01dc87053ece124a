using System.Globalization;
using System.Numerics;
using System.Text.RegularExpressions;
using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>
/// The sm_90a row tiles' staged epilogue on the CPU (no GPU): which tiles fit, the specialised PTX of the plain and
/// SwiGLU staged epilogues (conflict-free staging stores covering the tile once, the order wait_group.read &lt; stores &lt;
/// fence &lt; bulk copies &lt; commit with no warpgroup barrier, which values leave through bulk copies and which from
/// registers), the register-store tiles unchanged, and dSwiGLU running staged tiles as their register twins.
/// </summary>
[TestClass]
public sealed class Sm90aStagedEpiloguePlanTests
{
    [TestMethod]
    public void StagedRowTiles_AreCandidatesWhereTheStagingFits()
    {
        string[] staged = GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16)
            .Where(c => c.StagedEpilogue).Select(c => c.Name).ToArray();
        CollectionAssert.AreEqual(new[] { "sm90a_128x128x64_s4_w12_stg", "sm90a_128x256x64_s3_w12_stg", "sm90a_128x64x64_s6_w12_stg",
            "sm90a_128x256x64_s4_w12_stg", "sm90a_128x128x64_s6_w12_stg" }, staged);
        Assert.IsTrue(GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16).Contains(GemmConfig.Wgmma(256, 4)),
            "the register-store 128x256 s4 tile stays beside the staged ones");
        Assert.IsFalse(GroupedGemmSm90aSpecs.Candidates(GroupedGemmLayout.BackwardWeightTN, ScalarType.BFloat16).Any(c => c.StagedEpilogue));
        // the staging lives in the ring: a staged tile needs the shared memory of its register twin, no more
        Assert.AreEqual(GemmConfig.Wgmma(256, 4).WgmmaSharedBytes, GemmConfig.Wgmma(256, 4, staged: true).WgmmaSharedBytes);
        Assert.AreEqual(GemmConfig.Wgmma(128, 6).WgmmaSharedBytes,
            GemmConfig.Wgmma(128, 6, staged: true).WgmmaSharedBytesOf(GroupedGemmLayout.BackwardDataNN));
        foreach (GroupedGemmLayout layout in new[] { GroupedGemmLayout.ForwardNT, GroupedGemmLayout.BackwardDataNN })
        {
            Assert.IsNull(GemmConfig.Wgmma(256, 4, staged: true).Problem(GemmMath.WgmmaSm90a, layout));
            StringAssert.Contains(GemmConfig.Wgmma(256, 5, staged: true).Problem(GemmMath.WgmmaSm90a, layout) ?? "(accepted)", "shared memory");
            StringAssert.Contains(GemmConfig.Wgmma(256, 3, cluster: 2, staged: true).Problem(GemmMath.WgmmaSm90a, layout) ?? "(accepted)", "cluster");
            // two k-tiles to stage in: a reduction > 64 (K, or N for NN: C [R,K] = A [R,N] · W[e])
            bool nn = layout == GroupedGemmLayout.BackwardDataNN;
            StringAssert.Contains(GemmConfig.Wgmma(256, 4, staged: true).ShapeProblem(layout, nn ? 64 : 256, nn ? 256 : 64) ?? "(accepted)",
                nn ? "N must be > 64; got N = 64" : "K must be > 64; got K = 64");
            Assert.IsNull(GemmConfig.Wgmma(256, 4, staged: true).ShapeProblem(layout, nn ? 72 : 8, nn ? 8 : 72));
            Assert.IsNull(GemmConfig.Wgmma(256, 4).ShapeProblem(layout, 8, 8), "a register-store tile takes any K");
        }
        Assert.IsNull(GemmConfig.Wgmma(256, 3).ShapeProblem(GroupedGemmLayout.BackwardWeightTN, 8, 8));
        StringAssert.Contains(GemmConfig.Wgmma(128, 4, staged: true).Problem(GemmMath.WgmmaSm90a, GroupedGemmLayout.BackwardWeightTN) ?? "(accepted)", "TN kernel always stages");
        StringAssert.Contains((GemmConfig.Mma(128, 128, 4) with { StagedEpilogue = true }).Problem(GemmMath.MmaSm80) ?? "(accepted)", "staged epilogue");
        Assert.AreEqual(GemmConfig.Wgmma(256, 4), GroupedGemmSm90aSpecs.Default(GroupedGemmLayout.ForwardNT, 1536), "the default stays the register-store s4 tile");
    }

    [TestMethod]
    [DataRow(64, 6)]
    [DataRow(128, 4)]
    [DataRow(256, 3)]
    public void StagedPlain_StagesTheScaledTileConflictFreeThenOneBulkCopyPerRow(int blockN, int stages)
    {
        GroupedGemmSpec spec = GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, GemmConfig.Wgmma(blockN, stages, staged: true));
        Assert.AreEqual($"grouped_gemm_nt_sm90a_bf16_wgmma_128x{blockN}x64_s{stages}_stg", spec.EntryName);
        Assert.AreEqual("1", spec.Values["STAGED"]);
        int pitch = 2 * blockN + 16;
        Assert.AreEqual(Int(pitch), spec.Values["STG_PITCH"]);
        Assert.IsFalse(spec.Values.ContainsKey("STG_OFF"), "no staging area");
        Assert.AreEqual(stages * (16384 + blockN * 128), int.Parse(spec.Values["BAR_OFF"], CultureInfo.InvariantCulture), "the barriers right after the W stages");
        string ptx = spec.SpecialisedPtx();
        StringAssert.Contains(ptx, $".entry grouped_gemm_nt_sm90a_bf16_wgmma_128x{blockN}x64_s{stages}_stg(");
        AssertStagingCoversTheTileConflictFree(ptx, blockN, pitch);
        // every staged pair is the register path's math: scaled in f32 by its row's scale, then rounded
        Assert.AreEqual(blockN / 8, Regex.Matches(ptx, @"mul\.f32 x0, acc\d+, scale0; mul\.f32 x1, acc\d+, scale0; cvt\.rn\.bf16x2\.f32 o, x1, x0; st\.shared\.b32 \[st_frag\+").Count);
        Assert.AreEqual(blockN / 8, Regex.Matches(ptx, @"mul\.f32 x0, acc\d+, scale1; mul\.f32 x1, acc\d+, scale1; cvt\.rn\.bf16x2\.f32 o, x1, x0; st\.shared\.b32 \[st_frag\+").Count);
        Assert.AreEqual(0, Count(ptx, "st.global"), "C leaves only through the bulk copies");
        Assert.AreEqual(1, Count(ptx, "@p_cp cp.async.bulk.global.shared::cta.bulk_group [cp_out], [cp_rd], cp_bytes;"));
        StringAssert.Contains(ptx, "add.u64 cp_out, c_ptr, tmp64;");
        StringAssert.Contains(ptx, $"min.s32 cp_bytes, cp_bytes, {blockN};");
        AssertRingStagingOrder(ptx);
    }

    [TestMethod]
    [DataRow(64, 6)]
    [DataRow(128, 4)]
    [DataRow(256, 3)]
    public void StagedSwiGlu_StagesG1_CopiesItForTraining_AndComputesActFromTheStaging(int blockN, int stages)
    {
        GroupedGemmSpec spec = GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.Float16, GemmConfig.Wgmma(blockN, stages, staged: true),
            GroupedGemmEpilogue.SwiGlu);
        Assert.AreEqual($"grouped_gemm_nt_swiglu_sm90a_fp16_wgmma_128x{blockN}x64_s{stages}_stg", spec.EntryName);
        string ptx = spec.SpecialisedPtx();
        int pitch = 2 * blockN + 16;
        AssertStagingCoversTheTileConflictFree(ptx, blockN, pitch);
        // G1 = the accumulator rounded (gate columns then up columns: the staging row is [gate BN/2 | up BN/2])
        Assert.AreEqual(2 * blockN / 8, Regex.Matches(ptx, @"cvt\.rn\.f16x2\.f32 o, acc\d+, acc\d+; st\.shared\.b32 \[st_frag\+").Count);
        Assert.AreEqual(2, Count(ptx, "@p_cp cp.async.bulk.global.shared::cta.bulk_group [cp_out], [cp_rd], cp_bytes;"), "gate and up segments");
        StringAssert.Contains(ptx, "add.u64 cp_out, aux_ptr, tmp64;");
        StringAssert.Contains(ptx, $"add.u64 cp_out, cp_out, up_bytes; add.u32 cp_rd, cp_rd, {blockN};");
        StringAssert.Contains(ptx, $"min.s32 cp_bytes, cp_bytes, {blockN / 2};");
        int g1Only = ptx.IndexOf("and.pred p_cp, p_cp, has_aux;", StringComparison.Ordinal);
        Assert.IsTrue(g1Only > 0 && g1Only < ptx.IndexOf("@p_cp cp.async.bulk.global", StringComparison.Ordinal), "G1 copied only with p_aux != 0");
        // A: one 16-byte store of 8 columns per lane and staging row, in the fast and the exact pass; nothing else global
        Assert.AreEqual(2, Count(ptx, "@p_act st.global.v4.b32 [act_dst], {a_o0, a_o1, a_o2, a_o3};"));
        Assert.AreEqual(2, Regex.Matches(ptx, @"(?m)^\s*(@!?\w+\s+)?st\.global").Count, "A only through the two v4 stores, G1 only through the bulk copies");
        Assert.AreEqual(2, Count(ptx, "vote.sync.any.pred p_slow, p_slow, 0xffffffff;") + Count(ptx, "@!p_slow bra.uni EPI_ACT_DONE;"));
        int chunks = blockN / 16, rowsPerPass = 32 / chunks, passes = 16 / rowsPerPass;
        StringAssert.Contains(ptx, $"and.b32 act_cc, lane, {chunks - 1};");
        StringAssert.Contains(ptx, chunks == 4 ? "shr.u32 act_r0, lane, 3;\n    and.b32 utmp, lane, 4;\n    add.u32 act_r0, act_r0, utmp;"
            : $"shr.u32 act_r0, lane, {BitOperations.Log2((uint)chunks)};");
        StringAssert.Contains(ptx, $"setp.lt.u32 p, act_i, {passes};");
        StringAssert.Contains(ptx, $"mad.lo.u32 act_row, act_i, {rowsPerPass}, act_r0;");
        StringAssert.Contains(ptx, $"mad.lo.u32 utmp, act_i, {rowsPerPass * pitch}, act_rd0;");
        StringAssert.Contains(ptx, $"[utmp+{blockN}];");   // the up chunk, BN/2 columns after the gate chunk
        // the act reads: every (staging row, 8-column chunk) of the warp's 16 rows once; each quarter-warp's 16-byte
        // loads hit 32 distinct banks
        var seen = new HashSet<(int Row, int Chunk)>();
        for (int i = 0; i < passes; i++)
            for (int quarter = 0; quarter < 4; quarter++)
            {
                var banks = new HashSet<int>();
                for (int lane = 8 * quarter; lane < 8 * quarter + 8; lane++)
                {
                    int row = rowsPerPass * i + (chunks == 4 ? (lane >> 3) + (lane & 4) : lane / chunks);
                    int chunk = lane % chunks, address = row * pitch + 16 * chunk;
                    Assert.IsTrue(seen.Add((row, chunk)), $"pass {i} lane {lane}: chunk read twice");
                    for (int word = 0; word < 4; word++) banks.Add((address / 4 + word) % 32);
                }
                Assert.AreEqual(32, banks.Count, $"pass {i} quarter {quarter}: bank conflicts");
            }
        Assert.AreEqual(16 * chunks, seen.Count, "16 rows x BN/16 chunks per warp");
        AssertRingStagingOrder(ptx);
        Assert.IsTrue(ptx.IndexOf("@p_copier cp.async.bulk.commit_group;", StringComparison.Ordinal) < ptx.IndexOf("EPI_ACT_FAST:", StringComparison.Ordinal),
            "the G1 copies are issued before the act math");
    }

    [TestMethod]
    public void RegisterTiles_StageNothing_AndDSwiGluRunsStagedTilesAsTheirTwins()
    {
        GroupedGemmSpec plain = GroupedGemmSpecs.Create(GroupedGemmLayout.ForwardNT, ScalarType.BFloat16, GemmConfig.Wgmma(256, 4));
        Assert.AreEqual("0", plain.Values["STAGED"]);
        Assert.AreEqual("", plain.Values["EPI_STAGE"]);
        Assert.AreEqual(4 * (16384 + 256 * 128), int.Parse(plain.Values["BAR_OFF"], CultureInfo.InvariantCulture), "no staging bytes");
        string ptx = plain.SpecialisedPtx();
        StringAssert.Contains(ptx, "setp.ne.u32 stg_on, 0, 0;");
        Assert.AreEqual(0, Count(ptx, "bra.uni C_LAST_DONE;") + Count(ptx, "and.pred p, p, ring_keep;") + Count(ptx, "@!ring_due bra.uni C_RING_HELD;"),
            "a register-store tile releases every slot in its k-loop");
        Assert.AreEqual(2 * 32, Regex.Matches(ptx, @"@p_col st\.global\.b32 \[out[01]\+").Count, "C from registers");
        Assert.AreEqual(0, Regex.Matches(ptx, @"st\.shared\.b32 \[st_frag").Count);

        GroupedGemmSpec dswiglu = GroupedGemmSpecs.Create(GroupedGemmLayout.BackwardDataNN, ScalarType.BFloat16, GemmConfig.Wgmma(256, 3, staged: true),
            GroupedGemmEpilogue.DSwiGlu);
        Assert.AreEqual(GemmConfig.Wgmma(256, 3), dswiglu.Config);
        Assert.AreEqual("grouped_gemm_nn_dswiglu_sm90a_bf16_wgmma_128x256x64_s3", dswiglu.EntryName);
        Assert.AreEqual("0", dswiglu.Values["STAGED"]);
        Assert.ThrowsExactly<ArgumentException>(() => Sm90aEpilogues.Values(GroupedGemmEpilogue.DSwiGlu, 256, "bf16", staged: true, 528).ToArray());
    }

    [TestMethod]
    [DataRow(64)]
    [DataRow(128)]
    [DataRow(256)]
    public void RingStagingBase_PutsEachWarpsRowsInsideTheTilesLastTwoSlots_Disjoint(int blockN)
    {
        int pitch = 2 * blockN + 16, warpBytes = 16 * pitch, bStage = blockN * 128, bOffset = 4 * 16384;
        string code = Sm90aRingStaging.StagingBase(blockN, pitch, bOffset);
        MatchCollection places = Regex.Matches(code, @"setp\.eq\.u32 p, utmp, (\d+); @p mad\.lo\.u32 stg, (ring_x|prev_slot), (\d+), (\d+);");
        Assert.AreEqual(8, places.Count, "one place per consumer warp");
        // two slots' parts as byte ranges of a 4-stage ring at slots x = 1, y = 2 (any two distinct slots do)
        var slotOf = new Dictionary<string, int> { ["ring_x"] = 1, ["prev_slot"] = 2 };
        var taken = new List<(long Start, long End)>();
        for (int i = 0; i < 8; i++)
        {
            Match m = places[i];
            Assert.AreEqual(i, int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), "warps in order");
            int slot = slotOf[m.Groups[2].Value], stride = int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
            long start = (long)slot * stride + int.Parse(m.Groups[4].Value, CultureInfo.InvariantCulture), end = start + warpBytes;
            bool inA = stride == 16384 && start >= slot * 16384L && end <= (slot + 1) * 16384L;
            bool inB = stride == bStage && start >= bOffset + (long)slot * bStage && end <= bOffset + (slot + 1L) * bStage;
            Assert.IsTrue(inA || inB, $"warp {i}: [{start}, {end}) outside the A and W parts of slot {slot}");
            Assert.AreEqual(0, start % 16, $"warp {i}: rows 16-byte aligned for the bulk copies");
            Assert.IsFalse(taken.Any(t => start < t.End && t.Start < end), $"warp {i} overlaps another warp's rows");
            taken.Add((start, end));
        }
        StringAssert.Contains(code, $"mul.lo.u32 utmp, warp, {warpBytes};");
        Assert.ThrowsExactly<InvalidOperationException>(() => Sm90aRingStaging.StagingBase(512, 1040, bOffset), "6 warps' rows fit, not 8");
    }

    /// <summary>The ring staging's order in a staged row tile: in the k-loop the last tile's two slots are released
    /// (after this k-tile's wgmmas, once the lane's copies have read them) before the second-to-last slot is held and
    /// recorded; the last slot's release is skipped; then one consumer barrier, the staging stores, fence.proxy.async,
    /// the bulk copies, commit, and the slots marked due; the consumer waits for its last copies before ret.</summary>
    private static void AssertRingStagingOrder(string ptx)
    {
        int consumer = ptx.IndexOf("CONSUMER:", StringComparison.Ordinal);
        Assert.IsGreaterThan(0, consumer);
        int At(string s) { int i = ptx.IndexOf(s, consumer, StringComparison.Ordinal); Assert.IsTrue(i >= 0, s); return i; }
        Assert.AreEqual(1, Regex.Matches(ptx[consumer..], @"(?m)^\s*bar\.sync").Count, "one consumer barrier");
        int[] order =
        [
            At("wgmma.wait_group.sync.aligned 1;"), At("@!ring_due bra.uni C_RING_HELD;"), At("cp.async.bulk.wait_group.read 0;"),
            At("shl.b32 utmp, ring_x, 3;"), At("shl.b32 utmp, prev_slot, 3;"), At("setp.ne.u32 ring_due, tid, tid;     // false: released"),
            At("C_RING_HELD:"), At("and.pred p, p, ring_keep;"), At("@p mbarrier.arrive.shared::cta.b64 _, [bar];"),
            At("mov.u32 ring_x, prev_slot;"), At("wgmma.wait_group.sync.aligned 0;"), At("bra.uni C_LAST_DONE;"),
            At("\nC_LAST_DONE:"), At("bar.sync 2, 256;"), At("@p mad.lo.u32 stg,"),
            At("[st_frag+0]"), ptx.LastIndexOf("[st_frag+", StringComparison.Ordinal), At("fence.proxy.async.shared::cta;      // the fragment"),
            At("@p_cp cp.async.bulk.global.shared::cta.bulk_group"), At("@p_copier cp.async.bulk.commit_group;"),
            At("setp.eq.u32 ring_due, tid, tid;"), ptx.LastIndexOf("ALL_DONE:", StringComparison.Ordinal),
        ];
        for (int i = 1; i < order.Length; i++)
            Assert.IsLessThan(order[i], order[i - 1], $"step {i} of the ring staging's order is out of place");
        Assert.AreEqual(2, Count(ptx, "@p_leader mbarrier.arrive.shared::cta.b64 _, [bar];   // the last tile's second-to-last slot")
            + Count(ptx, "@p_leader mbarrier.arrive.shared::cta.b64 _, [bar];   // and its last slot"), "both held slots released");
        int done = ptx.LastIndexOf("ALL_DONE:", StringComparison.Ordinal);
        Assert.IsTrue(Regex.IsMatch(ptx[done..], @"(?m)^\s*(@!?\w+\s+)?cp\.async\.bulk\.wait_group 0;"), "the consumer waits for its last copies before ret");
    }

    /// <summary>Every staging store of a warp (8 rows g x 4 threads q at g * pitch + 4q + offset) hits 32 distinct
    /// banks, and the offsets cover columns 0 .. BN-1 of the warp's rows g and g+8 exactly once.</summary>
    private static void AssertStagingCoversTheTileConflictFree(string ptx, int blockN, int pitch)
    {
        int[] offsets = Regex.Matches(ptx, @"st\.shared\.b32 \[st_frag\+(\d+)\]").Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToArray();
        Assert.AreEqual(2 * blockN / 8, offsets.Length, "BN/8 column blocks x rows g, g+8");
        var elements = new HashSet<(int Row, int Col)>();
        foreach (int at in offsets)
        {
            var banks = new HashSet<int>();
            for (int lane = 0; lane < 32; lane++)
            {
                int address = lane / 4 * pitch + 4 * (lane % 4) + at;
                banks.Add(address / 4 % 32);
                int row = address / pitch, col = address % pitch / 2;
                Assert.IsTrue(col + 1 < blockN, $"offset {at}: column {col} past the tile");
                Assert.IsTrue(elements.Add((row, col)) && elements.Add((row, col + 1)), $"offset {at} lane {lane} stores twice");
            }
            Assert.AreEqual(32, banks.Count, $"st.shared.b32 [st_frag+{at}]: bank conflicts");
        }
        Assert.AreEqual(16 * blockN, elements.Count, "16 rows x BN columns per warp");
    }

    /// <summary>k-loop end &lt; wait_group.read &lt; staging stores &lt; fence.proxy.async &lt; bulk copies &lt; commit, only
    /// warp barriers in the consumer, and the consumer's end waits for its last copies: the staged epilogue of the row
    /// tiles and of the TN kernel. <paramref name="copyGuard"/> is the bulk copy's predicate (<c>@p_cp</c>, <c>@p</c>).
    /// Returns where the k-loop ends and the commit stands, for a caller's own order checks.</summary>
    internal static (int KLoopEnd, int Commit) AssertBulkCopiesOverlapTheNextTile(string ptx, string copyGuard,
        string copyOp = "cp.async.bulk.global.shared::cta.bulk_group")
    {
        int At(string s) { int i = ptx.IndexOf(s, StringComparison.Ordinal); Assert.IsTrue(i >= 0, s); return i; }
        int consumer = At("CONSUMER:");
        Assert.AreEqual(-1, ptx.IndexOf("bar.sync", consumer, StringComparison.Ordinal), "no warpgroup barrier in the consumer");
        Assert.AreEqual(2, Count(ptx, "bar.warp.sync 0xffffffff;"));
        string copyInstruction = $"{copyGuard} {copyOp}";
        int kLoopEnd = At("wgmma.wait_group.sync.aligned 0;"), read = At("@p_copier cp.async.bulk.wait_group.read 0;");
        int firstStore = At("[st_frag+0]"), lastStore = ptx.LastIndexOf("[st_frag+", StringComparison.Ordinal);
        int fence = ptx.IndexOf("fence.proxy.async.shared::cta;", lastStore, StringComparison.Ordinal);
        int copy = At(copyInstruction), lastCopy = ptx.LastIndexOf(copyInstruction, StringComparison.Ordinal);
        int commit = At("@p_copier cp.async.bulk.commit_group;");
        Assert.IsTrue(kLoopEnd < read && read < firstStore && lastStore < fence && fence < copy && lastCopy < commit,
            "k-loop end < wait_group.read < staging stores < fence.proxy.async < bulk copies < commit");
        int done = ptx.LastIndexOf("ALL_DONE:", StringComparison.Ordinal);
        Assert.IsTrue(done > commit && Regex.IsMatch(ptx[done..], @"(?m)^\s*(@!?\w+\s+)?cp\.async\.bulk\.wait_group 0;"),
            "the consumer waits for its last copies before ret");
        return (kLoopEnd, commit);
    }

    /// <summary>Instructions only (a line's first token, after an optional guard), not the header's comments.</summary>
    private static int Count(string ptx, string s) => Regex.Matches(ptx, @"(?m)^\s*(@!?\w+\s+)?" + Regex.Escape(s)).Count;

    private static string Int(int v) => v.ToString(CultureInfo.InvariantCulture);
}
