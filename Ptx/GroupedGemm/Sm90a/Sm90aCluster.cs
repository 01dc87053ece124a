using System.Globalization;

namespace MoeNative.Ptx;

/// <summary>
/// The template values of the row-tiled sm_90a kernel's cluster mode (grouped_gemm_rows_wgmma_sm90a.ptx header,
/// "Cluster of 2"): with <see cref="GemmConfig.Cluster"/> 2 the two CTAs of a cluster compute two m-tiles of one
/// (expert, n-tile) and each multicasts half of every W stage to both; with 1 every value is the plain kernel's. The TN
/// kernel shares the ring fragments and takes <see cref="Single"/>.
/// </summary>
internal static class Sm90aCluster
{
    private const string ClusterBarrier = "    barrier.cluster.arrive.release.aligned;\n    barrier.cluster.wait.acquire.aligned;";
    private const string Tma = "    cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes";

    /// <summary>A consumer warp's release of ring slot [bar] outside a cluster (one of the 8 arrivals empty[s] expects).</summary>
    public const string LocalEmptyArrive = "mbarrier.arrive.shared::cta.b64 _, [bar]";

    /// <summary>The ring fragments' values outside a cluster (the TN kernel, and CLUSTER 1 of the rows kernel).</summary>
    public static IEnumerable<KeyValuePair<string, string>> Single()
    {
        yield return new("EMPTY_ARRIVE", LocalEmptyArrive);
        yield return new("PEER_RELEASE", "");
        yield return new("PEER_RELEASE_LAST", "");
        yield return new("CLUSTER_EXIT", "");
    }

    /// <summary>The rows kernel's cluster values for <paramref name="cluster"/> CTAs (1 or 2) and tile width
    /// <paramref name="columns"/> (BN): scheduler unit, entry suffix, rank setup, peer releases and the barriers.</summary>
    public static IEnumerable<KeyValuePair<string, string>> Rows(int cluster, int columns)
    {
        if (cluster == 1)
        {
            foreach (KeyValuePair<string, string> v in Single()) yield return v;
            foreach (KeyValuePair<string, string> v in WalkUnit(GemmConfig.WgmmaBlockM)) yield return v;
            yield return new("CLUSTER_TAG", "");
            yield return new("CLUSTER_DIRECTIVE", "");
            yield return new("CLUSTER_SYNC", "");
            yield return new("CLUSTER_SETUP", "");
            yield return new("TILE_FIRST", "%ctaid.x");
            yield return new("TILE_STRIDE", "%nctaid.x");
            yield return new("M0_OF_RANK", "");
            yield break;
        }
        if (cluster != 2) throw new ArgumentOutOfRangeException(nameof(cluster), cluster, "Expected a cluster of 1 or 2 CTAs.");
        // A slot is free for the next fill once both CTAs' 8 consumer warps read it. Each local release arrives and
        // expects one tx unit; each peer warp completes one unit on it remotely. A relaxed complete_tx, because a
        // remote mbarrier.arrive has release semantics, and ptxas puts MEMBAR.ALL.GPU in front of it: a fence in every
        // consumer's k-loop. No ordering is needed, since wait_group has finished the wgmma that read the slot.
        yield return new("EMPTY_ARRIVE", "mbarrier.arrive.expect_tx.shared::cta.b64 _, [bar], 1");
        const string release = "    mapa.shared::cluster.u32 peer_bar, bar, peer;   // the same slot's empty barrier in the peer\n"
            + "    @{0} mbarrier.complete_tx.relaxed.cluster.shared::cluster.b64 [peer_bar], 1;";
        yield return new("PEER_RELEASE", string.Format(CultureInfo.InvariantCulture, release, "p"));
        yield return new("PEER_RELEASE_LAST", string.Format(CultureInfo.InvariantCulture, release, "p_leader"));
        yield return new("CLUSTER_EXIT", ClusterBarrier);
        foreach (KeyValuePair<string, string> v in WalkUnit(2 * GemmConfig.WgmmaBlockM)) yield return v;   // a pair of m-tiles
        yield return new("CLUSTER_TAG", "_c2");
        yield return new("CLUSTER_DIRECTIVE", ".reqnctapercluster 2, 1, 1");
        yield return new("CLUSTER_SYNC", ClusterBarrier);
        yield return new("CLUSTER_SETUP",
            "    mov.u32 rank, %cluster_ctarank;\n"
            + "    xor.b32 peer, rank, 1;\n"
            + $"    mul.lo.u32 rank_m, rank, {GemmConfig.WgmmaBlockM};   // this rank's m-tile of the pair\n"
            + $"    mul.lo.u32 rank_n, rank, {columns / 2};   // its half of the W stage: rows (NT) / columns (NN) + BN/2 r\n"
            + $"    mul.lo.u32 rank_b, rank, {columns / 2 * 128};   // at stage row BN/2 r (128 B per row)\n"
            + "    mov.b16 cta_mask, 3;   // multicast to both CTAs");
        yield return new("TILE_FIRST", "%clusterid.x");
        yield return new("TILE_STRIDE", "%nclusterid.x");
        yield return new("M0_OF_RANK", "    add.u32 m0, m0, rank_m;");
    }

    /// <summary>
    /// The producer leader's W loads of one stage in a cluster of 2 (after its expect_tx of the whole stage on
    /// <c>bar</c>): this rank's half, multicast to both CTAs. NT: rows n0 + rank_n of a (64 k, BN/2, 1) box; NN: the
    /// BN/128 (64 n, 64 k, 1) boxes of columns n0 + rank_n ..; SwiGLU: the gate (rank 0) or up (rank 1) box of W seen as
    /// (K, I, 2E). Each lands at stage_b + rank_b.
    /// </summary>
    public static string WeightLoad(GroupedGemmLayout layout, int columns, bool swiGlu)
    {
        string mc = Tma + ".multicast::cluster";
        if (swiGlu)
            return "    shr.u32 b_col, n0, 1; shl.b32 b_e, e_cur, 1; add.u32 b_e, b_e, rank; add.u32 b_dst, stage_b, rank_b;   // gate (2e) | up (2e+1) half\n"
                + mc + " [b_dst], [w_map, {k_coord, b_col, b_e}], [bar], cta_mask;   // box (64 k, BN/2 rows, 1)";
        if (layout == GroupedGemmLayout.ForwardNT)
            return "    add.u32 b_col, n0, rank_n; add.u32 b_dst, stage_b, rank_b;   // rows n0 + BN/2 r ..\n"
                + mc + " [b_dst], [w_map, {k_coord, b_col, e_cur}], [bar], cta_mask;   // box (64 k, BN/2 n, 1)";
        var sb = new System.Text.StringBuilder();
        for (int j = 0; j < columns / 128; j++)
        {
            if (j > 0) sb.Append('\n');
            sb.Append(CultureInfo.InvariantCulture, $"    add.u32 b_col, n0, rank_n; add.u32 b_col, b_col, {64 * j}; add.u32 b_dst, stage_b, rank_b; add.u32 b_dst, b_dst, {8192 * j};\n")
              .Append(mc).Append(" [b_dst], [w_map, {b_col, k_coord, e_cur}], [bar], cta_mask;   // box (64 n, 64 k, 1)");
        }
        return sb.ToString();
    }

    private static string Int(int value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>The scheduler's unit of rows: BM and its log2 (sched_expert_tiles.ptx divides by a shift).</summary>
    private static IEnumerable<KeyValuePair<string, string>> WalkUnit(int rows)
    {
        yield return new("BM", Int(rows));
        yield return new("BM_SHIFT", Int(System.Numerics.BitOperations.Log2((uint)rows)));
    }
}
