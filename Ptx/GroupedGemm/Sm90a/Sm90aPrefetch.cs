using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace MoeNative.Ptx;

/// <summary>
/// The row-tiled sm_90a GEMMs' L2 prefetch ahead of their ring (grouped_gemm_rows_wgmma_sm90a.ptx header, "L2
/// prefetch"): beside its TMA load of k-tile kt the producer leader asks L2 for the W box of k-tile kt +
/// <see cref="WeightTiles"/> (<c>cp.async.bulk.prefetch.tensor</c>: no shared memory, no barrier), and every producer
/// thread for the 128 bytes of k-tile kt + <see cref="RowTiles"/> of its own table row (<c>prefetch.global.L2</c>).
/// The ring alone hides (STAGES - 1) k-tiles of load latency; W at T = 4096 is read from DRAM once per (expert,
/// n-tile), so every tile waits on that latency. 0 = off. <see cref="EnvironmentVariable"/> overrides the default for
/// measurements (the PTX text changes with it, so the module cache keys it).
/// </summary>
internal readonly record struct Sm90aPrefetch(int WeightTiles, int RowTiles)
{
    /// <summary><c>w=N,a=N</c> (either, N = 0..16 k-tiles ahead): replaces <see cref="Default"/>'s fields.</summary>
    public const string EnvironmentVariable = "MOENATIVE_SM90A_PREFETCH";

    /// <summary>The most k-tiles ahead either prefetch may run.</summary>
    public const int MaxTiles = 16;

    /// <summary>The distances the kernels are built with unless <see cref="EnvironmentVariable"/> says otherwise.</summary>
    public static Sm90aPrefetch Default => new(4, 4);

    private static Sm90aPrefetch? s_current;

    /// <summary><see cref="Default"/> with <see cref="EnvironmentVariable"/> applied (read once per process).</summary>
    /// <exception cref="FormatException">See <see cref="Parse"/>.</exception>
    public static Sm90aPrefetch Current => s_current ??= Parse(Environment.GetEnvironmentVariable(EnvironmentVariable));

    /// <summary><see cref="Default"/> with the keys of <paramref name="text"/> applied: comma-separated <c>w=N</c>
    /// (W boxes), <c>a=N</c> (A rows), N = 0..<see cref="MaxTiles"/>; null or blank text changes nothing.</summary>
    /// <exception cref="FormatException">An unknown key or a value that is not an integer in 0..<see cref="MaxTiles"/>;
    /// the message names <see cref="EnvironmentVariable"/>.</exception>
    public static Sm90aPrefetch Parse(string? text)
    {
        Sm90aPrefetch p = Default;
        if (string.IsNullOrWhiteSpace(text)) return p;
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] kv = part.Split('=', 2, StringSplitOptions.TrimEntries);
            if (kv.Length != 2 || !int.TryParse(kv[1], NumberStyles.None, CultureInfo.InvariantCulture, out int v) || v > MaxTiles)
                throw new FormatException($"{EnvironmentVariable}: '{part}' is not key=N with N in 0..{MaxTiles} (keys: w, a).");
            p = kv[0] switch
            {
                "w" => p with { WeightTiles = v },
                "a" => p with { RowTiles = v },
                _ => throw new FormatException($"{EnvironmentVariable}: unknown key '{kv[0]}' (keys: w, a)."),
            };
        }
        return p;
    }

    // a W stage load line: cp.async.bulk.tensor.3d.<...> [dst], [w_map, {c0, c1, c2}], [bar](, mask); // comment
    private static readonly Regex TensorLoad = new(@"^(\s*)cp\.async\.bulk\.tensor\.3d\.\S+ \[[^\]]+\], \[w_map, \{([^}]*)\}\].*$",
        RegexOptions.CultureInvariant);

    /// <summary>
    /// The prefetch twin of a W stage load (<see cref="Sm90aFragments.WeightLoad"/>, the SwiGLU and cluster loads):
    /// <c>pf_coord = k_coord + 64 <see cref="WeightTiles"/></c>, then every line of <paramref name="weightLoad"/> with
    /// each TMA load turned into <c>cp.async.bulk.prefetch.tensor.3d.L2.global.tile [w_map, {..}]</c> at pf_coord for
    /// k_coord (the other lines compute the same box coordinates). A box past K fetches nothing. Empty when off.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="weightLoad"/> holds no TMA load of w_map.</exception>
    public string WeightPrefetch(string weightLoad)
    {
        if (WeightTiles == 0) return "";
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"    add.u32 pf_coord, k_coord, {64 * WeightTiles};   // L2 prefetch: the W box {WeightTiles} k-tiles ahead");
        int loads = 0;
        foreach (string line in weightLoad.Split('\n'))
        {
            Match m = TensorLoad.Match(line);
            sb.Append('\n');
            if (!m.Success)
            {
                sb.Append(line);
                continue;
            }
            string coords = Regex.Replace(m.Groups[2].Value, @"\bk_coord\b", "pf_coord");
            sb.Append(m.Groups[1].Value).Append("cp.async.bulk.prefetch.tensor.3d.L2.global.tile [w_map, {").Append(coords).Append("}];");
            loads++;
        }
        if (loads == 0) throw new ArgumentException("Expected at least one TMA load of w_map.", nameof(weightLoad));
        return sb.ToString();
    }

    /// <summary>
    /// Every producer thread's prefetch of its table row (row m0 + tid, address t_off, 0 = past the expert): the 128
    /// bytes at byte kbyte + 128 <see cref="RowTiles"/> of the row (k-tile kt + RowTiles), when inside the row (k_bytes).
    /// Registers: kbyte (in: 2 k_coord), pf_byte, pf_src, p_pf, p, t_off, k_bytes. Empty when off.
    /// </summary>
    public string RowPrefetch() => RowTiles == 0 ? "" : string.Create(CultureInfo.InvariantCulture,
        $"    add.s32 pf_byte, kbyte, {128 * RowTiles};   // L2 prefetch: this thread's table row, {RowTiles} k-tiles ahead\n")
        + "    setp.lt.s32 p_pf, pf_byte, k_bytes;\n"
        + "    setp.ne.s64 p, t_off, 0;\n"
        + "    and.pred p_pf, p_pf, p;\n"
        + "    cvt.s64.s32 pf_src, pf_byte;\n"
        + "    add.s64 pf_src, pf_src, t_off;\n"
        + "    @p_pf prefetch.global.L2 [pf_src];";
}
