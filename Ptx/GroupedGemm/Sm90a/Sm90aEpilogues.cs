using System.Globalization;
using System.Numerics;
using System.Text;

namespace MoeNative.Ptx;

/// <summary>
/// The fused epilogues of grouped_gemm_rows_wgmma_sm90a.ptx (EPI_ROW0/1 and the swiglu W load), generated per
/// accumulator register. The f32 math is exactly that of Elementwise/silu_mul.ptx (sigmoid8.ptx and its two bodies),
/// instruction for instruction, on the same dtype-rounded inputs, so the fused and unfused paths give the same bits:
/// s = rcp.rn(1 + ex2.approx(-log2(e)·g)); a = (g·s)·u; dg = ((dA·u)·s)·fma(g, 1 − s, 1); du = (dA·g)·s.
/// Registers (declared in the kernel): acc*, lim, p_col, out0|1, aux0|1, aux_up, out_up, up_bytes, has_aux, p_g1,
/// o_g, o_u, o_d, l_g0..1, l_u0..1 (dSwiGLU's G1 loads), p_slow, p_e, e_v, e_w (FastThenExact), e_h0..1 and the f32 temporaries e_g, e_u, e_d, e_s, e_t, e_r, e_q (0..1).
/// </summary>
internal static class Sm90aEpilogues
{
    /// <summary>The template values that select <paramref name="epilogue"/> in the row-tiled kernel, from registers
    /// or (<paramref name="staged"/>: plain and SwiGlu only) through the staging tile of row pitch <paramref name="pitch"/>.
    /// Staged plain stages the scaled C tile (one segment of BN columns per row, to C row c(r)). Staged SwiGlu stages
    /// the G1 tile (rounded accumulator: [gate BN/2 | up BN/2] per row), copies it out when p_aux != 0 (two segments of
    /// BN/2 columns, to G1 row c(r) columns n0/2.. and I + n0/2..) and computes A from the staged G1
    /// (<see cref="SwiGluStagedAct"/>: 16-byte stores of whole 8-column chunks).</summary>
    public static IEnumerable<KeyValuePair<string, string>> Values(GroupedGemmEpilogue epilogue, int columns, string ptxType,
        bool staged, int pitch)
    {
        if (staged && epilogue == GroupedGemmEpilogue.DSwiGlu)
            throw new ArgumentException("The dSwiGLU epilogue stores from registers (its dG1 tile is 2 BN columns wide).", nameof(staged));
        string widen = "cvt.f32." + ptxType;
        bool swiGlu = epilogue == GroupedGemmEpilogue.SwiGlu;
        yield return new("EPI_TAG", Tag(epilogue));
        yield return new("EPI_COL_SHIFT", swiGlu ? "1" : "0");
        yield return new("EPI_PITCH_SHIFT", epilogue == GroupedGemmEpilogue.DSwiGlu ? "1" : "0");
        for (int row = 0; row < 2; row++)
            yield return new($"EPI_ROW{row}", staged ? "" : epilogue switch
            {
                GroupedGemmEpilogue.SwiGlu => SwiGluRow(columns, row, ptxType, widen),
                GroupedGemmEpilogue.DSwiGlu => DSwiGluRow(columns, row, ptxType, widen),
                _ => Sm90aFragments.EpilogueRow(columns, row, ptxType),
            });
        yield return new("STAGED", staged ? "1" : "0");
        yield return new("STG_TAG", staged ? "_stg" : "");
        yield return new("STG_DST", swiGlu ? "aux_ptr" : "c_ptr");
        yield return new("STG_ROW_PITCH", swiGlu ? "aux_pitch" : "c_pitch");
        int segment = swiGlu ? columns / 2 : columns;
        yield return new("STG_SEG_COLS", segment.ToString(CultureInfo.InvariantCulture));
        yield return new("EPI_STAGE", staged ? Sm90aFragments.StagingStores(columns, ptxType, pitch, scaled: !swiGlu) : "");
        bool stagedSwiGlu = staged && swiGlu;
        yield return new("STG_ACT_SETUP", stagedSwiGlu ? SwiGluStagedActSetup : "");
        yield return new("STG_SECOND", stagedSwiGlu
            ? string.Create(CultureInfo.InvariantCulture, $"    add.u64 cp_out, cp_out, up_bytes; add.u32 cp_rd, cp_rd, {2 * segment};   // the up half: G1 column I + n0/2.., staging byte BN\n")
              + "    @p_cp cp.async.bulk.global.shared::cta.bulk_group [cp_out], [cp_rd], cp_bytes;"
            : "");
        yield return new("STG_ACT", stagedSwiGlu ? SwiGluStagedAct(columns, ptxType, widen, pitch) : "");
    }

    /// <summary>Staged SwiGLU, in the copier lanes after cp_out: cp_act = &amp;A[c(r), n0/2] of the lane's staging row
    /// (0 when the row is past the expert: the act lanes take it by shfl), then the G1 copies only with p_aux != 0.</summary>
    private const string SwiGluStagedActSetup =
        "    mul.wide.s32 tmp64, r_c, c_pitch;\n    add.s64 tmp64, tmp64, t_off;\n    shl.b64 tmp64, tmp64, 1;\n"
        + "    add.u64 cp_act, c_ptr, tmp64;\n    selp.b64 cp_act, cp_act, 0, p_cp;   // &A[c(r), n0/2], 0 = no row\n"
        + "    mov.b64 {cp_act_lo, cp_act_hi}, cp_act;\n"
        + "    and.pred p_cp, p_cp, has_aux;       // G1 copied out only for training (p_aux != 0)";

    /// <summary>
    /// Staged SwiGLU's A from the staged G1 (after the G1 copies are issued; they only read the staging too): lane l
    /// takes 8-column chunk cc = l % C (C = BN/16 chunks of the BN/2 act columns) of staging rows
    /// 16w + (32/C)·i + l / C, i &lt; BN/32: ld.shared.v4 of its gate and up chunks (a quarter-warp reads 128
    /// contiguous bytes; with C = 4, BN = 64, rows 16w + 8i + (l &gt;&gt; 3) + (l &amp; 4): its two rows 4 apart, 16
    /// banks apart), the math of <see cref="SwiGluRow"/> on the same rounded values, one st.global.v4 of the
    /// 8 act values to A[c(r), n0/2 + 8cc] (a warp writes whole rows' 16-byte chunks) when the row is inside the expert
    /// (its pointer from copier lane (32/C)·i + l / C by shfl; 0 = none) and the chunk inside I. Two passes as
    /// <see cref="FastThenExact"/>, the redo decided warp-wide (vote.any: the pass has shfls).
    /// </summary>
    private static string SwiGluStagedAct(int columns, string ptxType, string widen, int pitch)
    {
        int chunks = columns / 16, rowsPerPass = 32 / chunks, passes = 16 / rowsPerPass, shift = BitOperations.Log2((uint)chunks);
        // 128x64: a quarter-warp reads 2 rows, 4 and not 1 apart (36 words a row: 1 apart share 12 banks)
        bool twoRowsPerQuarter = chunks == 4;
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"    // ---- A from the staged G1: lane l, chunk l % {chunks}, rows 16w + {rowsPerPass}i + ")
          .Append(twoRowsPerQuarter ? "(l >> 3) + (l & 4)" : string.Create(CultureInfo.InvariantCulture, $"l / {chunks}"))
          .Append(CultureInfo.InvariantCulture, $" (i < {passes})\n    and.b32 act_cc, lane, {chunks - 1};\n")
          .Append(twoRowsPerQuarter
              ? "    shr.u32 act_r0, lane, 3;\n    and.b32 utmp, lane, 4;\n    add.u32 act_r0, act_r0, utmp;\n"
              : string.Create(CultureInfo.InvariantCulture, $"    shr.u32 act_r0, lane, {shift};\n"))
          .Append("    shl.b32 utmp, warp, 4;\n    add.u32 utmp, utmp, act_r0;\n")
          .Append(CultureInfo.InvariantCulture, $"    mul.lo.u32 act_rd0, utmp, {pitch};\n    shl.b32 utmp, act_cc, 4;\n")
          .Append("    add.u32 act_rd0, act_rd0, utmp;\n    add.u32 act_rd0, act_rd0, stg;      // &stg[16w + act_r0][8 act_cc] (gate)\n")
          .Append("    cvt.u64.u32 act_off, utmp;           // the chunk's bytes inside the A row segment\n")
          .Append("    shr.u32 tmp, n0, 1;\n    shl.b32 utmp, act_cc, 3;\n    add.s32 tmp, tmp, utmp;\n")
          .Append("    setp.lt.s32 p_actcol, tmp, epi_cols;   // the chunk's 8 columns inside I (I % 8 == 0)\n")
          .Append("    setp.ne.s32 p_slow, lim, lim;   // false: no denominator outside rcp.rn's fast path yet");
        for (int pass = 0; pass < 2; pass++)
        {
            bool exact = pass == 1;
            string loop = exact ? "EPI_ACT_EXACT" : "EPI_ACT_FAST";
            sb.Append(CultureInfo.InvariantCulture, $"\n    mov.u32 act_i, 0;\n{loop}:\n")
              .Append(CultureInfo.InvariantCulture, $"    mad.lo.u32 act_row, act_i, {rowsPerPass}, act_r0;   // the staging row inside the warp's 16\n")
              .Append("    shfl.sync.idx.b32 act_lo, cp_act_lo, act_row, 31, 0xffffffff;\n")
              .Append("    shfl.sync.idx.b32 act_hi, cp_act_hi, act_row, 31, 0xffffffff;\n")
              .Append("    mov.b64 act_dst, {act_lo, act_hi};\n    setp.ne.u64 p_act, act_dst, 0;\n    and.pred p_act, p_act, p_actcol;\n")
              .Append(CultureInfo.InvariantCulture, $"    mad.lo.u32 utmp, act_i, {rowsPerPass * pitch}, act_rd0;\n")
              .Append("    ld.shared.v4.b32 {a_g0, a_g1, a_g2, a_g3}, [utmp];\n")
              .Append(CultureInfo.InvariantCulture, $"    ld.shared.v4.b32 {{a_u0, a_u1, a_u2, a_u3}}, [utmp+{columns}];   // the up chunk: BN/2 columns on\n");
            for (int k = 0; k < 4; k++)
            {
                sb.Append(CultureInfo.InvariantCulture, $"    mov.b32 {{e_h0, e_h1}}, a_g{k}; {widen} f_g{2 * k}, e_h0; {widen} f_g{2 * k + 1}, e_h1;\n")
                  .Append(CultureInfo.InvariantCulture, $"    mov.b32 {{e_h0, e_h1}}, a_u{k}; {widen} f_u{2 * k}, e_h0; {widen} f_u{2 * k + 1}, e_h1;\n");
            }
            for (int e = 0; e < 8; e++)
            {
                Sigmoid(sb, $"f_g{e}", $"f_s{e}", exact);
                sb.Append(CultureInfo.InvariantCulture, $"    mul.f32 f_r{e}, f_g{e}, f_s{e}; mul.f32 f_r{e}, f_r{e}, f_u{e};   // silu(g) u\n");
            }
            for (int k = 0; k < 4; k++)
                sb.Append(CultureInfo.InvariantCulture, $"    cvt.rn.{ptxType}x2.f32 a_o{k}, f_r{2 * k + 1}, f_r{2 * k};\n");
            sb.Append("    add.u64 act_dst, act_dst, act_off;\n    @p_act st.global.v4.b32 [act_dst], {a_o0, a_o1, a_o2, a_o3};\n")
              .Append(CultureInfo.InvariantCulture, $"    add.u32 act_i, act_i, 1;\n    setp.lt.u32 p, act_i, {passes};\n    @p bra.uni {loop};");
            if (!exact)
                sb.Append("\n    vote.sync.any.pred p_slow, p_slow, 0xffffffff;   // warp-wide: the redo has shfls\n")
                  .Append("    @!p_slow bra.uni EPI_ACT_DONE;   // rare: redo every chunk with rcp.rn");
        }
        sb.Append("\nEPI_ACT_DONE:");
        return sb.ToString();
    }

    /// <summary>"" | "_swiglu" | "_dswiglu": the entry-name part of the epilogue.</summary>
    public static string Tag(GroupedGemmEpilogue epilogue) => epilogue switch
    {
        GroupedGemmEpilogue.Plain => "",
        GroupedGemmEpilogue.SwiGlu => "_swiglu",
        GroupedGemmEpilogue.DSwiGlu => "_dswiglu",
        _ => throw new ArgumentOutOfRangeException(nameof(epilogue), epilogue, "Expected Plain, SwiGlu or DSwiGlu."),
    };

    /// <summary>
    /// The swiglu W stage (after the leader's expect_tx on <c>bar</c>): W [E, 2I, K] seen as (K, I, 2E), two boxes
    /// (64 k, BN/2 rows, 1): gate rows n0/2.. of half 2e to stage_b, up rows of half 2e+1 to stage_b + BN/2·128.
    /// </summary>
    public static string SwiGluWeightLoad(int columns)
    {
        const string Tma = "    cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes";
        return "    shr.u32 b_col, n0, 1; shl.b32 b_e, e_cur, 1;   // first gate/up row n0/2; gate half of expert e: 2e\n"
            + Tma + " [stage_b], [w_map, {k_coord, b_col, b_e}], [bar];   // gate rows: box (64 k, BN/2 rows, 1)\n"
            + string.Create(CultureInfo.InvariantCulture, $"    add.u32 b_e, b_e, 1; add.u32 b_dst, stage_b, {columns / 2 * 128};   // up half 2e+1, stage rows BN/2..\n")
            + Tma + " [b_dst], [w_map, {k_coord, b_col, b_e}], [bar];   // up rows";
    }

    /// <summary>SwiGLU row <paramref name="row"/>: per 8-column block j &lt; BN/16 of the gate half (its up block is
    /// j + BN/16), columns e_col + 8j, +1 inside I while 8j &lt; lim. Two passes (<see cref="FastThenExact"/>).</summary>
    private static string SwiGluRow(int columns, int row, string ptxType, string widen)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"    add.u64 aux_up, aux{row}, up_bytes;   // &G1[r, I + e_col]");
        FastThenExact(sb, "SWIGLU", row, exact =>
        {
            int half = columns / 16;
            for (int j = 0; j < half; j++)
            {
                int g = 4 * j + 2 * row, u = 4 * (j + half) + 2 * row;
                sb.Append('\n').Append(CultureInfo.InvariantCulture,
                    $"    setp.gt.s32 p_col, lim, {8 * j}; and.pred p_g1, p_col, has_aux; ")
                  .Append(CultureInfo.InvariantCulture, $"cvt.rn.{ptxType}x2.f32 o_g, acc{g + 1}, acc{g}; cvt.rn.{ptxType}x2.f32 o_u, acc{u + 1}, acc{u};\n")
                  .Append(CultureInfo.InvariantCulture, $"    @p_g1 st.global.b32 [aux{row}+{16 * j}], o_g; @p_g1 st.global.b32 [aux_up+{16 * j}], o_u;\n");
                Widen(sb, "o_g", "e_g", widen);
                Widen(sb, "o_u", "e_u", widen);
                for (int i = 0; i < 2; i++)
                {
                    Sigmoid(sb, $"e_g{i}", $"e_s{i}", exact);
                    sb.Append(CultureInfo.InvariantCulture, $"    mul.f32 e_r{i}, e_g{i}, e_s{i}; mul.f32 e_r{i}, e_r{i}, e_u{i};   // silu(g) u\n");
                }
                sb.Append(CultureInfo.InvariantCulture, $"    cvt.rn.{ptxType}x2.f32 o_d, e_r1, e_r0; @p_col st.global.b32 [out{row}+{16 * j}], o_d;");
            }
        });
        return sb.ToString();
    }

    /// <summary>G1 pairs a dSwiGLU row loads ahead of their math (registers l_g0.., l_u0..): all loads of a chunk issue
    /// before its first store, so their latencies overlap.</summary>
    public const int DSwiGluLoadChunk = 2;

    /// <summary>dSwiGLU row <paramref name="row"/>: per 8-column block j &lt; BN/8, columns e_col + 8j, +1 inside I
    /// while 8j &lt; lim; dG1's gate half at out, its up half at out + up_bytes. G1 is read through the non-coherent
    /// path (ld.global.nc: G1 is never written by this kernel), <see cref="DSwiGluLoadChunk"/> blocks at a time. Two
    /// passes (<see cref="FastThenExact"/>).</summary>
    private static string DSwiGluRow(int columns, int row, string ptxType, string widen)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"    add.u64 aux_up, aux{row}, up_bytes; add.u64 out_up, out{row}, up_bytes;   // the up halves");
        FastThenExact(sb, "DSWIGLU", row, exact =>
        {
            for (int j0 = 0; j0 < columns / 8; j0 += DSwiGluLoadChunk)
            {
                for (int j = j0; j < j0 + DSwiGluLoadChunk; j++)
                    sb.Append('\n').Append(CultureInfo.InvariantCulture,
                        $"    setp.gt.s32 p_col, lim, {8 * j}; @p_col ld.global.nc.b32 l_g{j - j0}, [aux{row}+{16 * j}]; @p_col ld.global.nc.b32 l_u{j - j0}, [aux_up+{16 * j}];");
                for (int j = j0; j < j0 + DSwiGluLoadChunk; j++)
                {
                    int d = 4 * j + 2 * row;
                    sb.Append('\n').Append(CultureInfo.InvariantCulture,
                        $"    setp.gt.s32 p_col, lim, {8 * j}; cvt.rn.{ptxType}x2.f32 o_d, acc{d + 1}, acc{d};   // dA as stored unfused\n");
                    Widen(sb, "o_d", "e_d", widen);
                    Widen(sb, $"l_g{j - j0}", "e_g", widen);
                    Widen(sb, $"l_u{j - j0}", "e_u", widen);
                    for (int i = 0; i < 2; i++)
                    {
                        Sigmoid(sb, $"e_g{i}", $"e_s{i}", exact);
                        sb.Append(CultureInfo.InvariantCulture, $"    sub.f32 e_t{i}, 0f3F800000, e_s{i}; fma.rn.f32 e_t{i}, e_g{i}, e_t{i}, 0f3F800000;   // 1 + g (1 - s)\n")
                          .Append(CultureInfo.InvariantCulture, $"    mul.f32 e_r{i}, e_d{i}, e_u{i}; mul.f32 e_r{i}, e_r{i}, e_s{i}; mul.f32 e_r{i}, e_r{i}, e_t{i};   // dg\n")
                          .Append(CultureInfo.InvariantCulture, $"    mul.f32 e_q{i}, e_d{i}, e_g{i}; mul.f32 e_q{i}, e_q{i}, e_s{i};   // du\n");
                    }
                    sb.Append(CultureInfo.InvariantCulture, $"    cvt.rn.{ptxType}x2.f32 o_g, e_r1, e_r0; cvt.rn.{ptxType}x2.f32 o_u, e_q1, e_q0;\n")
                      .Append(CultureInfo.InvariantCulture, $"    @p_col st.global.b32 [out{row}+{16 * j}], o_g; @p_col st.global.b32 [out_up+{16 * j}], o_u;");
                }
            }
        });
        return sb.ToString();
    }

    /// <summary>
    /// A row's epilogue twice: first with rcp.rn's fast path written out branch-free (so ptxas can interleave the
    /// row's elements; rcp.rn itself compiles to a range test and a branch around a slow-path call per element, which
    /// serialises them), collecting in p_slow whether any denominator left that path's range; then, only if one did
    /// (d = 1 + e^-g ≥ 2^126 or NaN: g ≤ -87), the whole row again with rcp.rn, overwriting the same outputs. The
    /// result is rcp.rn's in both cases, so the bits stay those of silu_mul.ptx.
    /// </summary>
    private static void FastThenExact(StringBuilder sb, string tag, int row, Action<bool> body)
    {
        sb.Append("\n    setp.ne.s32 p_slow, lim, lim;   // false: no denominator outside rcp.rn's fast path yet");
        body(false);
        sb.Append(CultureInfo.InvariantCulture, $"\n    @!p_slow bra EPI_{tag}_ROW{row}_DONE;   // rare: redo the row with rcp.rn");
        body(true);
        sb.Append(CultureInfo.InvariantCulture, $"\nEPI_{tag}_ROW{row}_DONE:");
    }

    /// <summary>f32 F0, F1 = the two dtype halves of b32 <paramref name="packed"/> (low half = the lower column).</summary>
    private static void Widen(StringBuilder sb, string packed, string f, string widen) =>
        sb.Append(CultureInfo.InvariantCulture, $"    mov.b32 {{e_h0, e_h1}}, {packed}; {widen} {f}0, e_h0; {widen} {f}1, e_h1;\n");

    /// <summary>s = sigmoid(g) as sigmoid8.ptx: 1 / (1 + 2^(-g log2 e)), ex2.approx then rcp.rn; not
    /// <paramref name="exact"/>: rcp.rn's fast path as ptxas emits it for sm_90 (MUFU.RCP r; t = d·r − 1; r += r·(−t)),
    /// exact for d in [1, 2^126), which p_slow marks otherwise.</summary>
    private static void Sigmoid(StringBuilder sb, string g, string s, bool exact)
    {
        sb.Append(CultureInfo.InvariantCulture, $"    mul.f32 {s}, {g}, 0fBFB8AA3B; ex2.approx.f32 {s}, {s}; add.f32 {s}, {s}, 0f3F800000;   // d = 1 + e^-g\n");
        if (exact)
        {
            sb.Append(CultureInfo.InvariantCulture, $"    rcp.rn.f32 {s}, {s};   // sigmoid(g)\n");
            return;
        }
        sb.Append(CultureInfo.InvariantCulture, $"    setp.geu.f32 p_e, {s}, 0f7E800000; or.pred p_slow, p_slow, p_e;   // d >= 2^126 or NaN: rcp.rn's slow path\n")
          .Append(CultureInfo.InvariantCulture, $"    rcp.approx.ftz.f32 e_v, {s}; fma.rn.f32 e_w, {s}, e_v, 0fBF800000; neg.ftz.f32 e_w, e_w; fma.rn.f32 {s}, e_v, e_w, e_v;   // sigmoid(g)\n");
    }
}
