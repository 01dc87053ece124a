using MoeNative.Interop;
using static MoeNative.Interop.DeviceRangeChecks;

namespace MoeNative.Ptx;

// Decode kernels (decode_experts.ptx): the expert MLPs of a few tokens in two launches that stream every hit expert's
// weights once over all SMs. Routing (m_sizes, gather, inverse) comes from the routing kernels before them.
internal sealed partial class MoeKernels
{
    /// <summary>Largest E the decode kernels handle (eight groups of 32 expert counts per warp).</summary>
    public const int DecodeMaxExperts = 256;

    /// <summary>Columns of Y in one decode GEMM2 column block (one ticket counter each; a CTA walks one or more blocks).</summary>
    public const int DecodeColumnsPerCta = 8;

    private const int DecodeBlock = 128;             // 4 warps

    private const int DecodeWidths = 4;              // entries per dtype: 1, 2, 4, 8 rows per pass

    // [(programmatic ? 12 : 0) + dtype slot * 4 + width index]
    private readonly PtxKernel<DecodeGateUpSiluArgs>?[] _decodeGateUp = new PtxKernel<DecodeGateUpSiluArgs>?[2 * 3 * DecodeWidths];
    private readonly PtxKernel<DecodeDownCombineArgs>?[] _decodeDown = new PtxKernel<DecodeDownCombineArgs>?[2 * 3 * DecodeWidths];
    private readonly PtxKernel<DecodeDownTokenArgs>?[] _decodeDownToken = new PtxKernel<DecodeDownTokenArgs>?[2 * 3]; // [(programmatic ? 3 : 0) + dtype slot]
    // resident CTAs per SM of each loaded entry (same index; 0 until its first launch asks the driver)
    private readonly int[] _decodeGateUpResident = new int[2 * 3 * DecodeWidths];
    private readonly int[] _decodeDownResident = new int[2 * 3 * DecodeWidths];

    /// <summary>Whether this device runs the decode step with programmatic dependent launch (compute capability 9.0+;
    /// the sm_90 specialisations of the one-launch routing and the decode kernels).</summary>
    public bool CanLaunchProgrammatic => Context.ComputeCapability.Major >= 9;

    /// <summary>
    /// Whether the decode kernels handle these dims: a 16-bit storage dtype, 1 &lt;= E &lt;= 256, H and I positive
    /// multiples of 8 (16-byte row chunks). Buffers must also be 16-byte aligned (<see cref="DecodeAligned"/>).
    /// </summary>
    public static bool CanDecode(ScalarType dtype, int experts, int hidden, int inter) =>
        dtype is ScalarType.BFloat16 or ScalarType.Float16 && experts is >= 1 and <= DecodeMaxExperts &&
        hidden > 0 && hidden % 8 == 0 && inter > 0 && inter % 8 == 0;

    /// <summary>Whether every range starts 16-byte aligned (the kernels read rows with 16-byte loads).</summary>
    public static bool DecodeAligned(params ReadOnlySpan<DeviceRange> ranges)
    {
        foreach (DeviceRange r in ranges)
            if (r.Pointer % 16 != 0) return false;
        return true;
    }

    /// <summary>
    /// Bytes of a route record (Routing/fragments/routing_decode_record.ptx): 16 copies of 32 u32 words, one 128-byte line
    /// each, then 32 zero words at byte 2048 that <see cref="DecodeGateUpSilu"/> reads as its rows' slots (never
    /// written), then the routing's logit words ([E &lt;= 256] u32 at byte 2176, Routing/routing_decode.ptx step 2w).
    /// All zero before the first step; the routing kernel (logit words) and the down kernel (the rest) leave it zero after each.
    /// </summary>
    public const int DecodeRouteRecordBytes = DecodeRouteRecordLogitWords + 4 * DecodeMaxExperts;

    /// <summary>Byte offset of a route record's logit words (the routing module's LOGIT_WORDS placeholder, MoeKernelModules.LaunchSpecialised).</summary>
    public const int DecodeRouteRecordLogitWords = DecodeRouteRecordZeroSlots + 128;

    /// <summary>Copies of a route record's 32 words, one 128-byte L2 line each (the PTX polls copy ctaid.x % 16).</summary>
    private const int DecodeRouteRecordCopies = 16;

    /// <summary>Byte offset of a route record's 32 zero words: the gate/up kernel's gather (every row's slot / k is token 0 at T = 1).</summary>
    private const int DecodeRouteRecordZeroSlots = DecodeRouteRecordCopies * 128;

    /// <summary>Largest k a route record holds (one warp publishes it, a word per selected expert).</summary>
    public const int DecodeRouteRecordMaxTopK = 32;

    /// <summary>
    /// Whether a decode step can hand its experts over through a route record: T = 1 and k &lt;= 32. The routing kernel
    /// (<see cref="RoutingDecode"/>) publishes the k selected experts right after its top-k, and both decode kernels,
    /// given the same record, read their expert from it instead of from m_sizes: the gate/up kernel starts streaming
    /// while the routing kernel still writes its indices and ends.
    /// </summary>
    public static bool CanRouteRecord(int tokens, int topK) => tokens == 1 && topK is >= 1 and <= DecodeRouteRecordMaxTopK;

    /// <summary>The checks of a route record given to a launcher (Null: none): T and k (<see cref="CanRouteRecord"/>),
    /// its size and 128-byte alignment (one L2 line per copy).</summary>
    private static void CheckRouteRecord(DeviceRange record, int tokens, int topK)
    {
        if (record.IsNull) return;
        if (!CanRouteRecord(tokens, topK))
            throw new ArgumentException(
                $"A route record needs T = 1 and 1 <= k <= {DecodeRouteRecordMaxTopK}; got T={tokens}, k={topK}.", nameof(record));
        Need(record, DecodeRouteRecordBytes, nameof(record), $"[{DecodeRouteRecordBytes}] bytes");
        Aligned(record, 128, nameof(record));
    }

    /// <summary>Largest k of the T = 1 down entry (its shared slot and row tables hold 32; warp 0's lanes fill them).</summary>
    public const int DecodeDownTokenMaxTopK = 32;

    /// <summary>Warps of a T = 1 down CTA (at most; k when k is fewer): warp w takes the rows w, w + 4, ... (two passes at
    /// k = 8; 48 registers under ptxas 12.4: the grid of H/2 CTAs fits one wave at Qwen3-30B-A3B).</summary>
    private const int DecodeDownTokenWarps = 4;

    /// <summary>Whether <see cref="DecodeDownCombine"/> runs the T = 1 down entry (moe_decode_down_token: the warps take the
    /// rows in turn, the k-term sum in each CTA) for this step: T = 1, k &lt;= <see cref="DecodeDownTokenMaxTopK"/> and
    /// <see cref="DecodeTuning.TokenDown"/>; else the down kernel of every T. The same values either way.</summary>
    public static bool UsesDecodeDownToken(int tokens, int topK, DecodeTuning cut) =>
        tokens == 1 && topK <= DecodeDownTokenMaxTopK && cut.TokenDown;

    /// <summary>Length of the ticket-counter buffer <see cref="DecodeDownCombine"/> needs: H / 8 u32, zero before the first launch.</summary>
    public static int DecodeCounterCount(int hidden) => hidden / DecodeColumnsPerCta;

    /// <summary>
    /// GEMM1 + SwiGLU for the rows of every hit expert: G1[r] = X[gather[r]/k] · Wgu[e(r)]ᵀ (dtype; written when
    /// <paramref name="firstGemm"/> is not null), A[r, i] = silu(G1[r, i]) * G1[r, I+i] (fp32 math, one rounding).
    /// Overwrites its outputs. Bitwise the same for a token whatever the rest of the batch. With
    /// <paramref name="programmatic"/> (<see cref="CanLaunchProgrammatic"/>) it is launched with programmatic stream
    /// serialisation: it starts while the routing kernel before it ends and waits for it on the device.
    /// <paramref name="tuning"/> (default <see cref="DecodeTuning.For"/>) picks the pass width, the column walk and the
    /// prefetch distance, and with <see cref="DecodeTuning.FillDown"/> has this kernel ask L2 for <paramref name="down"/>'s
    /// rows of its experts for <see cref="DecodeDownCombine"/>; no choice changes a value. With a route
    /// <paramref name="record"/> (<see cref="CanRouteRecord"/>) it takes its experts from the record the
    /// <see cref="RoutingDecode"/> launch before it publishes (the same record), not from <paramref name="mSizes"/> and
    /// <paramref name="gather"/>, and the <see cref="DecodeDownCombine"/> launch after it must be given the record too
    /// (it zeroes it for the next step): the three launch as one step.
    /// </summary>
    /// <exception cref="ArgumentException"><see cref="DecodeTuning.FillDown"/> without <paramref name="down"/>; a record
    /// with T &gt; 1, k &gt; 32, fewer than <see cref="DecodeRouteRecordBytes"/> bytes or not 128-byte aligned.</exception>
    public void DecodeGateUpSilu(CudaStream stream, ScalarType dtype,
        DeviceRange x,         // [T,H] dtype
        DeviceRange gateUp,    // Wgu [E,2I,H] dtype
        DeviceRange down,      // Wd [E,H,I] dtype: read by the L2 fill only (FillDown), else may be Null
        DeviceRange mSizes,    // [E] i32
        DeviceRange gather,    // [TK] i32
        DeviceRange firstGemm, // G1 [TK,2I] dtype out, or Null
        DeviceRange act,       // A [TK,I] dtype out
        int tokens, int experts, int topK, int hidden, int inter, bool programmatic = false, DecodeTuning? tuning = null,
        DeviceRange record = default) // route record [DecodeRouteRecordBytes], or Null
    {
        DecodeTuning cut = CheckDecodeLaunch(stream, dtype, tokens, experts, topK, hidden, inter, programmatic, tuning);
        CheckRouteRecord(record, tokens, topK);
        const int es = 2;
        long tk = (long)tokens * topK;
        Need(x, (long)tokens * hidden * es, nameof(x), $"[T={tokens},H={hidden}] {dtype}");
        Need(gateUp, (long)experts * 2 * inter * hidden * es, nameof(gateUp), $"[E={experts},2I={2L * inter},H={hidden}] {dtype}");
        Need(mSizes, experts * 4L, nameof(mSizes), $"[E={experts}] i32");
        Need(gather, tk * 4, nameof(gather), $"[TK={tk}] i32");
        if (!firstGemm.IsNull) Need(firstGemm, tk * 2 * inter * es, nameof(firstGemm), $"[TK={tk},2I={2L * inter}] {dtype}");
        Need(act, tk * inter * es, nameof(act), $"[TK={tk},I={inter}] {dtype}");
        if (cut.FillDown && down.IsNull)
            throw new ArgumentException("The tuning fills L2 with the down weights (FillDown) but no down weights were given.", nameof(down));
        if (!down.IsNull) Need(down, (long)experts * hidden * inter * es, nameof(down), $"[E={experts},H={hidden},I={inter}] {dtype}");
        Aligned(x, 16, nameof(x)); // 16-byte row loads
        Aligned(gateUp, 16, nameof(gateUp));
        if (tokens == 0) return;
        var args = new DecodeGateUpSiluArgs
        {
            X = x.Pointer, GateUp = gateUp.Pointer, MSizes = mSizes.Pointer,
            Gather = record.IsNull ? gather.Pointer : record.Pointer + DecodeRouteRecordZeroSlots, // the routing kernel may still write gather
            FirstGemm = firstGemm.Pointer, Act = act.Pointer, Experts = experts, TopK = topK, Hidden = hidden, Inter = inter,
            Prefetch = cut.PrefetchGateUp ? 1 : 0, TopKMagic = DecodeDivisionMagic(topK), Fill = down.Pointer,
            FillBytes = cut.FillDown ? (ulong)DecodeTuning.FillDownBytes(tokens, experts, topK, hidden, inter, Context.L2CacheBytes) : 0,
            Record = record.Pointer,
        };
        LaunchDecode(stream, _decodeGateUp, _decodeGateUpResident, static k => MoeKernelModules.DecodeGateUpSiluEntry(k.Dtype, k.Rows),
            new DecodeKey(dtype, cut.RowsPerPass, programmatic), cut, DecodeTuning.GateColumnCtas(inter), int.MaxValue, Math.Min(experts, tk), in args);
    }

    /// <summary>
    /// GEMM2, the routing-weight scale and the sum over k: G2[c(r)] = scale(r) · A[r] · Wd[e(r)]ᵀ (dtype, c(r) = r, or
    /// gather[r] with <paramref name="slotOrder"/>; scale(r) = rowScale[gather[r]] or 1), then
    /// Y[t] = Σ_j w[t,j] · G2[row(t*k+j)] in j order (w = 1 when <paramref name="weights"/> is null) — the sums of
    /// moe_topk_combine. <paramref name="counters"/> [H/8] u32 must be 0 before the launch and are left 0 after it
    /// (one buffer per stream: two launches in flight must not share it). Overwrites G2 and Y. With
    /// <paramref name="programmatic"/> it starts while <see cref="DecodeGateUpSilu"/> ends: it finds its expert and
    /// sends its weight rows to L2 first, then waits for A on the device. <paramref name="tuning"/> as for
    /// <see cref="DecodeGateUpSilu"/> (here the walk is over 8-column blocks, each with its own ticket counter). With a
    /// route <paramref name="record"/> (the one the routing and gate/up launches of this step were given) it takes its
    /// experts from the record where it is still set (else from m_sizes once the grids before it have ended) and
    /// zeroes it once the gate/up grid has ended. A T = 1 step runs the one-token entry (<see cref="UsesDecodeDownToken"/>:
    /// the warps take the rows in turn, the k-term sum inside each CTA; the counters are not touched) with the same values.
    /// </summary>
    /// <exception cref="ArgumentException">A record with T &gt; 1, k &gt; 32, fewer than <see cref="DecodeRouteRecordBytes"/>
    /// bytes or not 128-byte aligned.</exception>
    public void DecodeDownCombine(CudaStream stream, ScalarType dtype,
        DeviceRange act,        // A [TK,I] dtype (expert order)
        DeviceRange down,       // Wd [E,H,I] dtype
        DeviceRange mSizes,     // [E] i32
        DeviceRange gather,     // [TK] i32
        DeviceRange inverse,    // [TK] i32
        DeviceRange rowScale,   // [T,k] dtype by slot, or Null
        DeviceRange secondGemm, // G2 [TK,H] dtype out
        DeviceRange weights,    // [T,k] dtype, or Null = all 1
        DeviceRange output,     // Y [T,H] dtype out
        DeviceRange counters,   // [H/8] u32, zero
        int tokens, int experts, int topK, int hidden, int inter, bool slotOrder, bool programmatic = false, DecodeTuning? tuning = null,
        DeviceRange record = default) // route record [DecodeRouteRecordBytes], or Null
    {
        DecodeTuning cut = CheckDecodeLaunch(stream, dtype, tokens, experts, topK, hidden, inter, programmatic, tuning);
        CheckRouteRecord(record, tokens, topK);
        const int es = 2;
        long tk = (long)tokens * topK;
        Need(act, tk * inter * es, nameof(act), $"[TK={tk},I={inter}] {dtype}");
        Need(down, (long)experts * hidden * inter * es, nameof(down), $"[E={experts},H={hidden},I={inter}] {dtype}");
        Need(mSizes, experts * 4L, nameof(mSizes), $"[E={experts}] i32");
        Need(gather, tk * 4, nameof(gather), $"[TK={tk}] i32");
        Need(inverse, tk * 4, nameof(inverse), $"[TK={tk}] i32");
        if (!rowScale.IsNull) Need(rowScale, tk * es, nameof(rowScale), $"[T={tokens},k={topK}] {dtype}");
        Need(secondGemm, tk * hidden * es, nameof(secondGemm), $"[TK={tk},H={hidden}] {dtype}");
        if (!weights.IsNull) Need(weights, tk * es, nameof(weights), $"[T={tokens},k={topK}] {dtype}");
        Need(output, (long)tokens * hidden * es, nameof(output), $"[T={tokens},H={hidden}] {dtype}");
        Need(counters, DecodeCounterCount(hidden) * 4L, nameof(counters), $"[H/8={DecodeCounterCount(hidden)}] u32");
        Aligned(act, 16, nameof(act)); // 16-byte row loads
        Aligned(down, 16, nameof(down));
        Aligned(secondGemm, 4, nameof(secondGemm)); // two columns per store
        Aligned(output, 4, nameof(output));
        if (tokens == 0) return;
        if (UsesDecodeDownToken(tokens, topK, cut))
        {
            var token = new DecodeDownTokenArgs
            {
                Act = act.Pointer, Down = down.Pointer, MSizes = mSizes.Pointer, Gather = gather.Pointer, Inverse = inverse.Pointer,
                RowScale = rowScale.Pointer, SecondGemm = secondGemm.Pointer, Weights = weights.Pointer, Output = output.Pointer,
                Experts = experts, TopK = topK, Hidden = hidden, Inter = inter, SlotOrder = slotOrder ? 1 : 0,
                Prefetch = cut.PrefetchDown ? 1 : 0, Record = record.Pointer,
            };
            PtxKernel<DecodeDownTokenArgs> kernel = Kernel(_decodeDownToken, (programmatic ? 3 : 0) + Slot(dtype), (dtype, programmatic),
                static k => MoeKernelModules.DecodeExperts(k.programmatic), static k => MoeKernelModules.DecodeDownTokenEntry(k.dtype));
            var grid = new Dim3((uint)(hidden / 2));
            var block = new Dim3((uint)(32 * Math.Min(topK, DecodeDownTokenWarps)));
            if (programmatic) kernel.LaunchProgrammatic(stream, grid, block, 0, in token);
            else kernel.Launch(stream, grid, block, 0, in token);
            return;
        }
        var args = new DecodeDownCombineArgs
        {
            Act = act.Pointer, Down = down.Pointer, MSizes = mSizes.Pointer, Gather = gather.Pointer, Inverse = inverse.Pointer,
            RowScale = rowScale.Pointer, SecondGemm = secondGemm.Pointer, Weights = weights.Pointer, Output = output.Pointer,
            Counters = counters.Pointer, Tokens = tokens, Experts = experts, TopK = topK, Hidden = hidden, Inter = inter,
            SlotOrder = slotOrder ? 1 : 0, Prefetch = cut.PrefetchDown ? 1 : 0, Record = record.Pointer,
        };
        LaunchDecode(stream, _decodeDown, _decodeDownResident, static k => MoeKernelModules.DecodeDownCombineEntry(k.Dtype, k.Rows),
            new DecodeKey(dtype, cut.RowsPerPass, programmatic), cut, DecodeTuning.DownColumnBlocks(hidden), DecodeTuning.MaxDownBlocksPerCta,
            Math.Min(experts, tk), in args);
    }

    /// <summary>
    /// Launches the decode entry <paramref name="entry"/>(<paramref name="key"/>) on grid (x, <paramref name="gridExperts"/>),
    /// block 128, plainly or with programmatic stream serialisation (<see cref="DecodeKey.Programmatic"/>); x from
    /// <paramref name="cut"/> over <paramref name="units"/> one-unit CTAs per expert, each walking at most
    /// <paramref name="maxWalk"/> (<see cref="DecodeTuning.GridX"/>), with the loaded kernel's resident CTAs per SM
    /// asked of the driver once (<paramref name="resident"/>[slot], 0 until then). Allocation-free after the first launch.
    /// </summary>
    private void LaunchDecode<TArgs>(CudaStream stream, PtxKernel<TArgs>?[] cache, int[] resident, Func<DecodeKey, string> entry,
        DecodeKey key, DecodeTuning cut, int units, int maxWalk, long gridExperts, in TArgs args) where TArgs : unmanaged
    {
        PtxKernel<TArgs> kernel = Kernel(cache, key.Slot, key, static k => MoeKernelModules.DecodeExperts(k.Programmatic), entry);
        int perSm = Volatile.Read(ref resident[key.Slot]);
        if (perSm == 0) Volatile.Write(ref resident[key.Slot], perSm = kernel.Kernel.MaxActiveBlocksPerMultiprocessor(DecodeBlock, 0));
        var grid = new Dim3((uint)cut.GridX(units, maxWalk, gridExperts, Context.MultiprocessorCount, perSm), (uint)gridExperts);
        if (key.Programmatic) kernel.LaunchProgrammatic(stream, grid, new Dim3(DecodeBlock), 0, in args);
        else kernel.Launch(stream, grid, new Dim3(DecodeBlock), 0, in args);
    }

    /// <summary>ceil(2^32 / k) for k &gt;= 2 (the gate/up kernel's mulhi quotient slot / k, corrected by one step), 0 for k = 1.</summary>
    public static uint DecodeDivisionMagic(int topK) => topK <= 1 ? 0u : (uint)(((1UL << 32) + (ulong)(topK - 1)) / (ulong)topK);

    /// <summary>Which decode entry: dtype, rows per pass, plain or programmatic module; <see cref="Slot"/> indexes the caches.</summary>
    private readonly record struct DecodeKey(ScalarType Dtype, int Rows, bool Programmatic)
    {
        public int Slot => (Programmatic ? 3 * DecodeWidths : 0) + MoeKernels.Slot(Dtype) * DecodeWidths + System.Numerics.BitOperations.Log2((uint)Rows);
    }

    /// <summary>The checks both decode launchers make first (stream, dims, programmatic launch, the cut); returns the cut
    /// (<paramref name="tuning"/>, or <see cref="DecodeTuning.For"/> when null).</summary>
    private DecodeTuning CheckDecodeLaunch(CudaStream stream, ScalarType dtype, int tokens, int experts, int topK, int hidden, int inter,
        bool programmatic, DecodeTuning? tuning)
    {
        CheckStream(stream);
        CheckDecodeDims(dtype, tokens, experts, topK, hidden, inter);
        CheckProgrammatic(programmatic);
        DecodeTuning cut = tuning ?? DecodeTuning.For(tokens, hidden);
        cut.Validate(nameof(tuning));
        return cut;
    }

    private void CheckProgrammatic(bool programmatic)
    {
        if (programmatic && !CanLaunchProgrammatic)
            throw new ArgumentException(
                $"Programmatic dependent launch needs compute capability 9.0 or newer; this device is {Context.ComputeCapability.Major}.{Context.ComputeCapability.Minor}.",
                nameof(programmatic));
    }

    private static void CheckDecodeDims(ScalarType dtype, int tokens, int experts, int topK, int hidden, int inter)
    {
        NonNegative(tokens, nameof(tokens));
        if (topK < 1 || topK > experts)
            throw new ArgumentOutOfRangeException(nameof(topK), topK, $"k must be in 1..E={experts}.");
        if ((long)tokens * topK > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"T*k = {(long)tokens * topK} must fit in int.");
        if (!CanDecode(dtype, experts, hidden, inter))
            throw new ArgumentException(
                $"The decode kernels need a bf16/fp16 dtype, 1 <= E <= {DecodeMaxExperts} and H, I positive multiples of 8; got " +
                $"{dtype}, E={experts}, H={hidden}, I={inter}.", nameof(dtype));
    }
}
