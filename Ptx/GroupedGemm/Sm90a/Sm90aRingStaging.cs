using System.Globalization;
using System.Text;

namespace MoeNative.Ptx;

/// <summary>
/// The staged row tiles' staging inside the ring (grouped_gemm_rows_wgmma_sm90a.ptx header, "Staged epilogue"): a tile
/// stages its 128 x BN output in the ring slots of its own last two k-tiles, which the consumers hold past the tile
/// (consumer_k_loop.ptx's RING_* hooks) and release in the next tile's first k-tile, once their bulk copies have read
/// them. So the staging costs no shared memory of its own (128x256 keeps 4 stages, 128x128 6) and a tile needs K &gt; 64
/// (two k-tiles). Every other kernel (the TN kernel, the register-store row tiles) takes <see cref="None"/>.
/// </summary>
internal static class Sm90aRingStaging
{
    /// <summary>Bytes of one ring slot's A part (128 rows x 128 B).</summary>
    private const int APartBytes = GemmConfig.WgmmaBlockM * 128;

    /// <summary>The k-loop hooks of a kernel without ring staging (the TN kernel): all empty.</summary>
    public static IEnumerable<KeyValuePair<string, string>> None()
    {
        yield return new("RING_RELEASE", "");
        yield return new("RING_HOLD", "");
        yield return new("RING_TRACK", "");
        yield return new("RING_LAST_SKIP", "");
    }

    /// <summary>The row tile's values: <see cref="Staged"/> for a staged tile, else the empty hooks and no staging base.</summary>
    public static IEnumerable<KeyValuePair<string, string>> Rows(bool staged, int columns, int pitch, int bOffset) =>
        staged ? Staged(columns, pitch, bOffset) : None().Append(new("STG_BASE", ""));

    /// <summary>The hooks and the staging base of a staged row tile of width <paramref name="columns"/> (BN) and staging
    /// row pitch <paramref name="pitch"/> bytes, its W stages at <paramref name="bOffset"/> (B_OFF).</summary>
    public static IEnumerable<KeyValuePair<string, string>> Staged(int columns, int pitch, int bOffset)
    {
        yield return new("RING_RELEASE",
            "    @!ring_due bra.uni C_RING_HELD;     // the last tile's two staging slots are still held\n"
            + "    cp.async.bulk.wait_group.read 0;    // this lane's bulk copies have read the staging\n"
            + "    bar.warp.sync 0xffffffff;           // ... and every lane's\n"
            + "    shl.b32 utmp, ring_x, 3;\n    add.u32 bar, empty_bar, utmp;\n"
            + $"    @p_leader {Sm90aCluster.LocalEmptyArrive};   // the last tile's second-to-last slot\n"
            + "    shl.b32 utmp, prev_slot, 3;\n    add.u32 bar, empty_bar, utmp;\n"
            + $"    @p_leader {Sm90aCluster.LocalEmptyArrive};   // and its last slot\n"
            + "    setp.ne.u32 ring_due, tid, tid;     // false: released\n"
            + "C_RING_HELD:");
        yield return new("RING_HOLD",
            "    add.s32 tmp, kt, 1;\n    setp.lt.s32 ring_keep, tmp, nk_tiles;\n"
            + "    and.pred p, p, ring_keep;           // the second-to-last slot stays held for the staging");
        yield return new("RING_TRACK", "    mov.u32 ring_x, prev_slot;          // after the last k-tile: the second-to-last slot");
        yield return new("RING_LAST_SKIP", "    bra.uni C_LAST_DONE;                // the last slot stays held for the staging");
        yield return new("STG_BASE", StagingBase(columns, pitch, bOffset));
    }

    /// <summary>
    /// stg = the consumer warp's 16 staging rows less 16·warp rows (so stg + (16w + row)·pitch addresses its row r):
    /// warp i = 4·cw + warp of the 8 consumer warps takes the next 16·pitch bytes of, in order, the W part of slot ring_x,
    /// the W part of slot prev_slot, the A part of ring_x, the A part of prev_slot (16-byte aligned: pitch is a multiple of
    /// 16). The capacities are whole warps; the generator checks that the 8 fit.
    /// </summary>
    public static string StagingBase(int columns, int pitch, int bOffset)
    {
        int warpBytes = 16 * pitch, bStage = columns * 128;
        (string Slot, int Stride, int Offset, int Bytes)[] parts =
        [
            ("ring_x", bStage, bOffset, bStage), ("prev_slot", bStage, bOffset, bStage),
            ("ring_x", APartBytes, 0, APartBytes), ("prev_slot", APartBytes, 0, APartBytes),
        ];
        var sb = new StringBuilder();
        sb.Append("    shl.b32 utmp, cw, 2;\n    add.u32 utmp, utmp, warp;           // this warp among the 8 consumer warps");
        int warpIndex = 0;
        foreach ((string slot, int stride, int offset, int bytes) in parts)
            for (int at = 0; at + warpBytes <= bytes && warpIndex < 8; at += warpBytes, warpIndex++)
                sb.Append('\n').Append(CultureInfo.InvariantCulture,
                    $"    setp.eq.u32 p, utmp, {warpIndex}; @p mad.lo.u32 stg, {slot}, {stride}, {offset + at};");
        if (warpIndex < 8)
            throw new InvalidOperationException($"The staging of 128x{columns} (pitch {pitch} B) does not fit the last two ring slots.");
        sb.Append('\n').Append(CultureInfo.InvariantCulture,
            $"    add.u32 stg, stg, base;\n    mul.lo.u32 utmp, warp, {warpBytes};\n    sub.u32 stg, stg, utmp;             // rows 16w.. of stg are the warp's");
        return sb.ToString();
    }
}
