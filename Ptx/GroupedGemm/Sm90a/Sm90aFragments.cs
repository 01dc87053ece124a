using System.Globalization;
using System.Text;

namespace MoeNative.Ptx;

/// <summary>
/// PTX text the sm_90a kernels repeat per accumulator register (written once here, substituted as template values):
/// the wgmma accumulator list, its zeroing, and the epilogue stores of the m64nNk16 f32 fragment (thread holds, for
/// j = 0..N/8-1, acc[4j], acc[4j+1] = D[g][8j+2q..+1] and acc[4j+2], acc[4j+3] = D[g+8][8j+2q..+1]; pinned on the
/// GPU by wgmma_layout_probe_sm90a.ptx).
/// </summary>
internal static class Sm90aFragments
{
    /// <summary>"{acc0, acc1, ..., acc(n-1)}": the accumulator vector of one wgmma m64nNk16 (n = N/2 f32 registers).</summary>
    public static string AccumulatorList(int registers) =>
        "{" + string.Join(", ", Enumerable.Range(0, registers).Select(i => "acc" + i.ToString(CultureInfo.InvariantCulture))) + "}";

    /// <summary>mov.f32 acc_i, 0 for every accumulator, 8 per line.</summary>
    public static string AccumulatorZero(int registers)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < registers; i++)
        {
            if (i % 8 == 0) sb.Append(i == 0 ? "    " : "\n    ");
            else sb.Append(' ');
            sb.Append(CultureInfo.InvariantCulture, $"mov.f32 acc{i}, 0f00000000;");
        }
        return sb.ToString();
    }

    /// <summary>
    /// Stores of fragment row <paramref name="row"/> (0: D row g, 1: D row g+8) of an N = <paramref name="columns"/>
    /// accumulator: per 8-column block j, columns 8j+2q and 8j+2q+1 scaled by <c>scale{row}</c>, rounded to
    /// <paramref name="ptxType"/>x2, stored as 4 bytes at <c>out{row} + 16j</c> when <c>8j &lt; lim</c> (the column
    /// is inside N). Registers used: acc*, scale0|1, out0|1, lim, x0, x1, o, p_col.
    /// </summary>
    public static string EpilogueRow(int columns, int row, string ptxType)
    {
        var sb = new StringBuilder();
        for (int j = 0; j < columns / 8; j++)
        {
            int lo = 4 * j + 2 * row, hi = lo + 1;
            if (j > 0) sb.Append('\n');
            sb.Append(CultureInfo.InvariantCulture,
                $"    setp.gt.s32 p_col, lim, {8 * j}; mul.f32 x0, acc{lo}, scale{row}; mul.f32 x1, acc{hi}, scale{row}; ")
              .Append(CultureInfo.InvariantCulture, $"cvt.rn.{ptxType}x2.f32 o, x1, x0; @p_col st.global.b32 [out{row}+{16 * j}], o;");
        }
        return sb.ToString();
    }

    /// <summary>
    /// The producer leader's TMA loads of one W stage (after its expect_tx on <c>bar</c>): NT one box
    /// {k_coord, n0, e_cur} -> stage_b; NN <paramref name="columns"/>/64 boxes {n0 + 64j, k_coord, e_cur} -> stage_b + 8192j.
    /// </summary>
    public static string WeightLoad(GroupedGemmLayout layout, int columns)
    {
        const string Tma = "    cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes";
        if (layout == GroupedGemmLayout.ForwardNT)
            return Tma + " [stage_b], [w_map, {k_coord, n0, e_cur}], [bar];   // box (64 k, BN n, 1)";
        var sb = new StringBuilder();
        for (int j = 0; j < columns / 64; j++)
        {
            if (j > 0) sb.Append('\n');
            sb.Append(CultureInfo.InvariantCulture, $"    add.u32 b_col, n0, {64 * j}; add.u32 b_dst, stage_b, {8192 * j};   // block {j}: columns n0+{64 * j}..+63\n")
              .Append(Tma).Append(" [b_dst], [w_map, {b_col, k_coord, e_cur}], [bar];   // box (64 n, 64 k, 1)");
        }
        return sb.ToString();
    }

    /// <summary>
    /// A batch of a producer's chunk loads from its row table (the rows kernels' A gather, the TN kernel's A and B
    /// rows): the entries of <paramref name="rows"/> rows j (A at tab_rd + <paramref name="tableStride"/> j into t_a{j};
    /// with B halves also B at +512 into t_b{j}) loaded first, so the shared loads are in flight together (ptxas keeps a
    /// shared load behind the cp.async before it, which writes shared memory); then per row one A chunk
    /// (<paramref name="aDst"/> + <paramref name="dstStride"/> j) and one B chunk per 128-column half h &lt;
    /// <paramref name="bHalves"/> (stage_b + dstStride j + 16384h, source +256 B per half), each from the row's address
    /// plus the thread's column offset (a_col_off, b_col_off) and zero-filled through the ignore-src predicate when the
    /// row is past the expert (entry 0) or the chunk past the row's end (a_out, b_out{h}).
    /// Registers used: t_a*, t_b*, p, p_row, a_out, b_out0|1, ld_src, tab_rd, aDst, stage_b, a_col_off, b_col_off.
    /// </summary>
    public static string ProducerRowLoads(int rows, int tableStride, string aDst, int dstStride, int bHalves)
    {
        var sb = new StringBuilder();
        for (int j = 0; j < rows; j++)
        {
            sb.Append(CultureInfo.InvariantCulture, $"    ld.shared.s64 t_a{j}, [tab_rd+{tableStride * j}];\n");
            if (bHalves > 0) sb.Append(CultureInfo.InvariantCulture, $"    ld.shared.s64 t_b{j}, [tab_rd+{512 + tableStride * j}];\n");
        }
        for (int j = 0; j < rows; j++)
        {
            sb.Append(CultureInfo.InvariantCulture, $"    setp.eq.s64 p_row, t_a{j}, 0;\n    or.pred p, p_row, a_out;\n    add.s64 ld_src, t_a{j}, a_col_off;\n")
              .Append(CultureInfo.InvariantCulture, $"    cp.async.cg.shared.global [{aDst}+{dstStride * j}], [ld_src], 16, p;\n");
            if (bHalves > 0) sb.Append(CultureInfo.InvariantCulture, $"    setp.eq.s64 p_row, t_b{j}, 0;\n    add.s64 ld_src, t_b{j}, b_col_off;\n");
            for (int h = 0; h < bHalves; h++)
            {
                if (h > 0) sb.Append("    add.s64 ld_src, ld_src, 256;\n");
                sb.Append(CultureInfo.InvariantCulture, $"    or.pred p, p_row, b_out{h};\n    cp.async.cg.shared.global [stage_b+{dstStride * j + 16384 * h}], [ld_src], 16, p;\n");
            }
        }
        return sb.ToString().TrimEnd('\n');
    }

    /// <summary>
    /// The staged row tiles' fragment stores (plain and SwiGLU) of the whole N = <paramref name="columns"/> accumulator
    /// into the staging tile (pitch <paramref name="pitch"/> bytes): per 8-column block j, D row g (acc[4j], acc[4j+1])
    /// and D row g+8 (acc[4j+2], acc[4j+3]), 8 rows further, each pair (multiplied by scale0 | scale1 in f32 when
    /// <paramref name="scaled"/>, as <see cref="EpilogueRow"/>) rounded to <paramref name="ptxType"/>x2 and stored as 4
    /// bytes at st_frag + 16j. Registers used: acc*, o, st_frag (scaled: x0, x1, scale0|1).
    /// </summary>
    public static string StagingStores(int columns, string ptxType, int pitch, bool scaled = false)
    {
        var sb = new StringBuilder();
        for (int j = 0; j < columns / 8; j++)
        {
            sb.Append(j > 0 ? "\n    " : "    ");
            for (int row = 0; row < 2; row++)
            {
                int lo = 4 * j + 2 * row, at = 16 * j + 8 * pitch * row;
                if (row > 0) sb.Append(' ');
                if (scaled)
                    sb.Append(CultureInfo.InvariantCulture, $"mul.f32 x0, acc{lo}, scale{row}; mul.f32 x1, acc{lo + 1}, scale{row}; cvt.rn.{ptxType}x2.f32 o, x1, x0; st.shared.b32 [st_frag+{at}], o;");
                else
                    sb.Append(CultureInfo.InvariantCulture, $"cvt.rn.{ptxType}x2.f32 o, acc{lo + 1}, acc{lo}; st.shared.b32 [st_frag+{at}], o;");
            }
        }
        return sb.ToString();
    }

    /// <summary>
    /// The TN kernel's fragment stores of the whole N = <paramref name="columns"/> accumulator into its staging: BN/C
    /// boxes of [64 rows][128 B] (C = 128 B of columns: 64 dtype or 32 f32 elements; box b at stg + 8192 b), the
    /// 16-byte chunk c of row r at ((c ^ (r &amp; 7)) * 16): the image a 128B-swizzled TMA store reads, and
    /// conflict-free for a warp's 4-byte stores (its 8 rows g put the same chunk in 8 different bank groups; the f32
    /// output's 8-byte stores run per half-warp, rows g = 0..3, whose chunk pairs meet: 2 words per bank). Per 8-column
    /// block j: box j / (C/8), chunk constant cc = j % 8 (dtype) or 2 (j % 4) (f32: a block is two chunks, the thread's
    /// pair in chunk cc + q/2); the thread's address st_row + ((cc &lt;&lt; 4) ^ swz) (st_row = &amp;stg[16w + g][0] + its
    /// byte in the chunk, swz = (g ^ (q/2 for f32)) &lt;&lt; 4, set by the kernel), row g+8 1024 B further.
    /// <paramref name="ptxType"/> bf16|f16: each pair rounded to ptxTypex2, one 4-byte store; null (f32 output): the
    /// pair unrounded, one 8-byte st.shared.v2.f32. Registers used: acc*, o, st_row, swz, st_frag.
    /// </summary>
    public static string SwizzledStagingStores(int columns, string? ptxType)
    {
        int elementBytes = ptxType is null ? 4 : 2, blocksPerBox = GemmConfig.WgmmaStoreBoxBytes / elementBytes / 8, boxBytes = 64 * GemmConfig.WgmmaStoreBoxBytes;
        var sb = new StringBuilder();
        for (int jj = 0; jj < blocksPerBox; jj++)
        {
            int chunk = 16 * jj * (8 / blocksPerBox);   // the block's first chunk, in bytes
            if (jj > 0) sb.Append('\n');
            sb.Append(CultureInfo.InvariantCulture, $"    xor.b32 st_frag, swz, {chunk}; add.u32 st_frag, st_frag, st_row;   // chunk {chunk / 16} of every box");
            for (int j = jj; j < columns / 8; j += blocksPerBox)
            {
                int box = boxBytes * (j / blocksPerBox);
                sb.Append("\n    ");
                for (int row = 0; row < 2; row++)
                {
                    int lo = 4 * j + 2 * row, at = box + 8 * GemmConfig.WgmmaStoreBoxBytes * row;   // row g+8
                    if (row > 0) sb.Append(' ');
                    if (ptxType is null)
                        sb.Append(CultureInfo.InvariantCulture, $"st.shared.v2.f32 [st_frag+{at}], {{acc{lo}, acc{lo + 1}}};");
                    else
                        sb.Append(CultureInfo.InvariantCulture, $"cvt.rn.{ptxType}x2.f32 o, acc{lo + 1}, acc{lo}; st.shared.b32 [st_frag+{at}], o;");
                }
            }
        }
        return sb.ToString();
    }

    /// <summary>The TN kernel's TMA stores of a consumer warp's 16 staged dW rows (lane 0, p_copier): one per box b of
    /// 128 B of columns, from stg + 8192 b + 2048 w (cp_rd) to dW[e_cur] rows r_n .., columns n0 + b (128 /
    /// <paramref name="elementBytes"/>) ..; the map clips rows past N and columns past K. Registers used: dw_map,
    /// cp_rd, r_n, e_cur, col, n0, p_copier.</summary>
    public static string TileStores(int columns, int elementBytes)
    {
        int boxColumns = GemmConfig.WgmmaStoreBoxBytes / elementBytes, boxBytes = 64 * GemmConfig.WgmmaStoreBoxBytes;
        var sb = new StringBuilder();
        for (int b = 0; b < columns / boxColumns; b++)
        {
            if (b > 0) sb.Append('\n');
            sb.Append(CultureInfo.InvariantCulture, $"    add.s32 col, n0, {b * boxColumns}; @p_copier cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [dw_map, {{col, r_n, e_cur}}], [cp_rd+{boxBytes * b}];");
        }
        return sb.ToString();
    }

    /// <summary>Stores of the probe kernel: the whole m64n128 fragment as f32 pairs, rows d_row0 (g) and d_row1 (g+8).</summary>
    public static string ProbeStores(int columns)
    {
        var sb = new StringBuilder();
        for (int j = 0; j < columns / 8; j++)
        {
            if (j > 0) sb.Append('\n');
            sb.Append(CultureInfo.InvariantCulture, $"    st.global.v2.f32 [d_row0+{32 * j}], {{acc{4 * j}, acc{4 * j + 1}}};   // D[g][8j+2q..]")
              .Append('\n')
              .Append(CultureInfo.InvariantCulture, $"    st.global.v2.f32 [d_row1+{32 * j}], {{acc{4 * j + 2}, acc{4 * j + 3}}};   // D[g+8][8j+2q..]");
        }
        return sb.ToString();
    }
}
