using System.Globalization;

namespace MoeNative.Ptx;

/// <summary>
/// How one decode step (decode_experts.ptx) is cut over the card. No choice changes a value: every pass width, column
/// walk and prefetch distance sums each row in the same order (batch invariance holds whatever is picked).
/// </summary>
/// <param name="RowsPerPass">Activation rows per pass over a warp's weight rows: the _rN entry (1, 2, 4 or 8), for both kernels.</param>
/// <param name="ColumnsPerWarp">How many columns each warp walks one after the other: intermediate columns in the
/// gate/up kernel, 8-column blocks (one per CTA at a time) in the down kernel (at most 32); 0 = as many as make each
/// grid fit the card in one wave (<see cref="GridX"/>).</param>
/// <param name="PrefetchGateUp">Whether each gate/up warp asks L2 for its weight rows 2 KB ahead of its loads.</param>
/// <param name="PrefetchDown">Whether each down warp does: its first 2 KB per row before it waits for the gate/up kernel
/// (with programmatic launch, while that kernel's last CTAs still run), then 2 KB ahead of its loads.</param>
/// <param name="FillDown">Whether the gate/up kernel asks L2 for the down kernel's weights of its experts while it streams
/// its own (evict_first), so the down kernel reads them from L2 (as many bytes as <see cref="FillDownBytes"/> gives).</param>
/// <param name="TokenDown">Whether a T = 1 step (k &lt;= 32) runs its down GEMM and combine in one kernel that sums over k
/// inside each CTA (moe_decode_down_token: no tickets, no G2 read back) rather than the down kernel of every T; the same
/// values. <see cref="RowsPerPass"/> and <see cref="ColumnsPerWarp"/> then cut the gate/up kernel only.</param>
internal readonly record struct DecodeTuning(int RowsPerPass, int ColumnsPerWarp, bool PrefetchGateUp, bool PrefetchDown, bool FillDown = false,
    bool TokenDown = true)
{
    /// <summary>Overrides the defaults for measurements: e.g. <c>rows=2,cols=1,prefetch=0</c> (any subset; <see cref="DecodeTuningOverride"/>).</summary>
    public const string EnvironmentVariable = "MOENATIVE_DECODE_TUNING";

    private const int GateColumnsPerCta = 4; // one intermediate column (gate + up row) per warp at a time

    /// <summary>
    /// The default for a T-token step at hidden size <paramref name="hidden"/>, each choice the best measured on an NVIDIA
    /// H200 (docs/PERF.md, decode sessions 4 and 6): the 1-row entry at T = 1 (2 accumulators per lane instead of 16, so
    /// more CTAs stay resident), the 2-row entry above (most hit experts have one or two rows at T ≤ 16; the 8-row entry
    /// at T = 8: 0.208 ms against 0.148 at Qwen3-30B-A3B); the one-wave column walk up to T = 4 (30B T=1 0.033 against
    /// 0.035 with one or two columns per warp) and <see cref="ColumnsAbove"/> columns per warp from T = 5 (30B T=8: 0.137
    /// with two, 0.144 with one, 0.140 with three; T=16 0.236 / 0.249 / 0.242; Qwen3-235B-A22B T=8 0.502 with one,
    /// 0.506 with two); no L2 prefetch (every T of both configs measured faster without: 30B T=1 0.039 vs 0.041, 235B T=1
    /// 0.095 vs 0.106, T=8 0.560 vs 0.633); the L2 fill of the down weights up to T = <see cref="MaxFillTokens"/>
    /// (session 5: 30B T=1 0.033 against 0.036 without); the T = 1 down kernel (<see cref="TokenDown"/>; session 12,
    /// v40: 30B T=1 2588-2611 GB/s against 2388-2417, 235B 3449-3454 against 3407-3410).
    /// </summary>
    public static DecodeTuning For(int tokens, int hidden) =>
        new(RowsPerPassFor(tokens), tokens <= MaxWalkTokens ? 0 : ColumnsAbove(hidden), PrefetchGateUp: false, PrefetchDown: false, FillDown: tokens <= MaxFillTokens);

    /// <summary>
    /// Columns per warp above <see cref="MaxWalkTokens"/>: enough that a gate/up warp streams at least
    /// <see cref="MinWarpGateUpBytes"/> of weight rows (a column is its gate and up rows, 2·H 16-bit elements) before it
    /// leaves, at least one: two at H = 2048 (Qwen3-30B-A3B), one at H = 4096 (Qwen3-235B-A22B), as measured (see
    /// <see cref="For"/>). A warp that leaves sooner spends its short life finding its expert and gathering its rows.
    /// </summary>
    public static int ColumnsAbove(int hidden) => (int)Math.Max(1, MinWarpGateUpBytes / Math.Max(1L, 2L * 2 * hidden));

    /// <summary>The gate/up weight bytes a warp streams at least, from T = 5 (<see cref="ColumnsAbove"/>).</summary>
    public const long MinWarpGateUpBytes = 16 * 1024;

    /// <summary>
    /// How many bytes of each hit expert's down weights (H*I 16-bit elements) the gate/up kernel asks L2 for
    /// (<see cref="FillDown"/>): all of them when the step's hit experts (at most min(E, T*k)) take at most half of an
    /// L2 of <paramref name="l2Bytes"/> (the other half holds what the gate/up kernel streams meanwhile), else none.
    /// Measured on an NVIDIA H200 (docs/PERF.md, decode v16): the whole fill wins (Qwen3-30B-A3B T=1 0.033 ms against
    /// 0.036), a part of each expert loses (30B T=2 at 60%: 0.056 against 0.054, T=4 0.093 against 0.090;
    /// Qwen3-235B-A22B T=1 at 31%: 0.094 against 0.091), so only whole fills are made (the kernel takes any length).
    /// </summary>
    public static long FillDownBytes(int tokens, int experts, int topK, int hidden, int inter, long l2Bytes)
    {
        long hits = Math.Min(experts, (long)tokens * topK), perExpert = (long)hidden * inter * 2;
        return hits > 0 && hits * perExpert <= l2Bytes / 2 ? perExpert : 0;
    }

    /// <summary>Largest T whose default fills L2 with the down weights (<see cref="FillDown"/>, <see cref="FillDownBytes"/>).</summary>
    public const int MaxFillTokens = 4;

    /// <summary>Largest T whose default walks columns to fit one wave (<see cref="For"/>); above it each warp walks
    /// <see cref="ColumnsAbove"/>.</summary>
    public const int MaxWalkTokens = 4;

    /// <summary>The default pass width of a T-token step (see <see cref="For"/>).</summary>
    public static int RowsPerPassFor(int tokens) => tokens <= 1 ? 1 : 2;

    /// <summary>Most 8-column blocks one down CTA walks (its ticket mask is one u32).</summary>
    public const int MaxDownBlocksPerCta = 32;

    /// <summary>One-column CTAs of the gate/up kernel per expert: ceil(I/4) (a warp per intermediate column).</summary>
    public static int GateColumnCtas(int inter) => (inter + GateColumnsPerCta - 1) / GateColumnsPerCta;

    /// <summary>One-block CTAs of the down kernel per expert: H/8 (8 output columns each).</summary>
    public static int DownColumnBlocks(int hidden) => hidden / MoeKernels.DecodeColumnsPerCta;

    /// <summary>
    /// grid.x of a decode kernel over <paramref name="units"/> one-unit CTAs per expert (<see cref="GateColumnCtas"/>,
    /// <see cref="DownColumnBlocks"/>): each CTA walks units x, x + grid.x, ..., <see cref="ColumnsPerWarp"/> of them
    /// (at most <paramref name="maxWalk"/>); when 0, the fewest that fit the units x <paramref name="gridExperts"/> CTAs
    /// in one wave of <paramref name="residentCtas"/> per SM (the loaded kernel's occupancy, as the driver allocated it).
    /// </summary>
    public int GridX(int units, int maxWalk, long gridExperts, int multiprocessors, int residentCtas)
    {
        long walk = Math.Min(ColumnsPerWarp > 0 ? ColumnsPerWarp : OneWaveWalk(units, gridExperts, multiprocessors, residentCtas), maxWalk);
        return (int)((units + walk - 1) / walk);
    }

    /// <summary>The fewest units per CTA that fit <paramref name="units"/> x <paramref name="gridExperts"/> one-unit CTAs
    /// in one wave of <paramref name="residentCtas"/> per SM (at least 1).</summary>
    private static long OneWaveWalk(long units, long gridExperts, int multiprocessors, int residentCtas)
    {
        long wave = (long)Math.Max(1, multiprocessors) * Math.Max(1, residentCtas);
        return Math.Max(1, (units * gridExperts + wave - 1) / wave);
    }

    /// <exception cref="ArgumentOutOfRangeException">A width without an entry or a negative column count.</exception>
    public void Validate(string paramName)
    {
        if (RowsPerPass is not (1 or 2 or 4 or 8))
            throw new ArgumentOutOfRangeException(paramName, RowsPerPass, "RowsPerPass must be 1, 2, 4 or 8 (the decode entries' widths).");
        if (ColumnsPerWarp < 0)
            throw new ArgumentOutOfRangeException(paramName, ColumnsPerWarp, "ColumnsPerWarp must be >= 0 (0: fit one wave).");
    }
}

/// <summary>
/// What <see cref="DecodeTuning.EnvironmentVariable"/> names, parsed once: the fields it replaces in a default
/// <see cref="DecodeTuning"/> (null: kept), for measurements. <see cref="Apply"/> allocates nothing.
/// </summary>
internal readonly record struct DecodeTuningOverride(int? RowsPerPass, int? ColumnsPerWarp, bool? PrefetchGateUp, bool? PrefetchDown, bool? FillDown = null,
    bool? TokenDown = null)
{
    /// <summary><see cref="DecodeTuning.EnvironmentVariable"/> as set now (unset or empty: no override).</summary>
    /// <exception cref="FormatException">See <see cref="Parse"/>.</exception>
    public static DecodeTuningOverride FromEnvironment() => Parse(Environment.GetEnvironmentVariable(DecodeTuning.EnvironmentVariable));

    /// <summary>Comma-separated <c>rows=1|2|4|8</c>, <c>cols=N</c> (N &gt;= 0), <c>prefetch=0|1</c> (both kernels),
    /// <c>prefetch_gate=0|1</c>, <c>prefetch_down=0|1</c> (one kernel each; a later key wins), <c>fill_down=0|1</c>
    /// (<see cref="DecodeTuning.FillDown"/>), <c>token_down=0|1</c> (<see cref="DecodeTuning.TokenDown"/>), any subset; null or blank
    /// text overrides nothing.</summary>
    /// <exception cref="FormatException">An unknown key, a value that is not a non-negative integer, or one out of its
    /// range; the message names <see cref="DecodeTuning.EnvironmentVariable"/>.</exception>
    public static DecodeTuningOverride Parse(string? text)
    {
        var o = new DecodeTuningOverride();
        if (string.IsNullOrWhiteSpace(text)) return o;
        const string name = DecodeTuning.EnvironmentVariable;
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] kv = part.Split('=', 2, StringSplitOptions.TrimEntries);
            if (kv.Length != 2 || !int.TryParse(kv[1], NumberStyles.None, CultureInfo.InvariantCulture, out int v))
                throw new FormatException($"{name}: '{part}' is not key=non-negative integer (keys: rows, cols, prefetch, prefetch_gate, prefetch_down, fill_down, token_down).");
            o = kv[0] switch
            {
                "rows" when v is 1 or 2 or 4 or 8 => o with { RowsPerPass = v },
                "rows" => throw new FormatException($"{name}: rows must be 1, 2, 4 or 8 (the decode entries' widths), got {v}."),
                "cols" => o with { ColumnsPerWarp = v },
                "prefetch" or "prefetch_gate" or "prefetch_down" or "fill_down" or "token_down" when v > 1 => throw new FormatException($"{name}: {kv[0]} must be 0 or 1, got {v}."),
                "prefetch" => o with { PrefetchGateUp = v == 1, PrefetchDown = v == 1 },
                "prefetch_gate" => o with { PrefetchGateUp = v == 1 },
                "prefetch_down" => o with { PrefetchDown = v == 1 },
                "fill_down" => o with { FillDown = v == 1 },
                "token_down" => o with { TokenDown = v == 1 },
                _ => throw new FormatException($"{name}: unknown key '{kv[0]}' (keys: rows, cols, prefetch, prefetch_gate, prefetch_down, fill_down, token_down)."),
            };
        }
        return o;
    }

    /// <summary><paramref name="defaults"/> with the named fields replaced.</summary>
    public DecodeTuning Apply(DecodeTuning defaults) =>
        new(RowsPerPass ?? defaults.RowsPerPass, ColumnsPerWarp ?? defaults.ColumnsPerWarp, PrefetchGateUp ?? defaults.PrefetchGateUp,
            PrefetchDown ?? defaults.PrefetchDown, FillDown ?? defaults.FillDown, TokenDown ?? defaults.TokenDown);
}
