using System.Runtime.CompilerServices;
using MoeNative.Interop;

namespace MoeNative.Ptx;

/// <summary>
/// The small kernels that keep a fused MoE block on the device: router softmax/top-k and its backward, routing indices,
/// row gather, SwiGLU forward/backward, top-k combine forward/backward and the dX sum over k.
/// One instance per <see cref="CudaContext"/> (<see cref="For"/>); each module is JIT-compiled on first use.
/// Every method validates all arguments (dtype, sizes, k &lt;= E, non-negative dims, null pointers and, when a
/// <see cref="DeviceRange"/> knows its size, that it holds the shape) and throws <see cref="ArgumentException"/>
/// naming the parameter and the expected shape before any launch; then it enqueues its launches on the given stream:
/// no synchronisation, no allocation (after the first call per kernel). Empty input returns without launching
/// (except <see cref="RoutingIndices"/>, which still zeroes m_sizes).
/// Legend: T tokens, E experts, k top-k, TK = T*k token slots, H hidden, I intermediate, R rows.
/// p = t*k + j token slot, r expert-ordered row; gather[r] = p, inverse[p] = r. Outputs are overwritten, never accumulated.
/// </summary>
public sealed class MoeKernels
{
    /// <summary>Largest E the router kernels handle (8 experts per lane of one warp).</summary>
    public const int RouterMaxExperts = 256;

    /// <summary>Largest E the routing-indices histogram handles (E*4 bytes of shared memory, within 48 KiB).</summary>
    public const int RoutingMaxExperts = 12288;

    private const int RowBlock = 128;     // threads of every row kernel (8 elements each per step)
    private const int RouterBlock = 256;  // 8 warps = 8 tokens per CTA
    private const int RoutingBlock = 1024;

    private static readonly ConditionalWeakTable<CudaContext, MoeKernels> Instances = new();

    private readonly Lock _gate = new();
    private readonly PtxKernel<RouterSoftmaxTopKArgs>?[] _routerForward = new PtxKernel<RouterSoftmaxTopKArgs>?[3];
    private readonly PtxKernel<RouterSoftmaxTopKBackwardArgs>?[] _routerBackward = new PtxKernel<RouterSoftmaxTopKBackwardArgs>?[3];
    private readonly PtxKernel<GatherRowsArgs>?[] _gatherRows = new PtxKernel<GatherRowsArgs>?[3];
    private readonly PtxKernel<SiluMulArgs>?[] _siluMul = new PtxKernel<SiluMulArgs>?[3];
    private readonly PtxKernel<SiluMulBackwardArgs>?[] _siluMulBackward = new PtxKernel<SiluMulBackwardArgs>?[3];
    private readonly PtxKernel<TopKCombineArgs>?[] _combine = new PtxKernel<TopKCombineArgs>?[3];
    private readonly PtxKernel<TopKCombineBackwardArgs>?[] _combineBackward = new PtxKernel<TopKCombineBackwardArgs>?[3];
    private readonly PtxKernel<SumOverTopKArgs>?[] _sumOverTopK = new PtxKernel<SumOverTopKArgs>?[3];
    private readonly PtxKernel<RouterLogitsGemvArgs>?[] _routerLogitsGemv = new PtxKernel<RouterLogitsGemvArgs>?[3];
    private PtxKernel<RoutingCountArgs>? _routingCount;
    private PtxKernel<RoutingScatterArgs>? _routingScatter;

    private MoeKernels(CudaContext context) => Context = context;

    public CudaContext Context { get; }

    /// <summary>The instance for <paramref name="context"/> (created on first call; kernels load lazily).</summary>
    public static MoeKernels For(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return Instances.GetValue(context, c => new MoeKernels(c));
    }

    // ============================================================================================== router
    /// <summary>
    /// Router forward, one warp per token: P = softmax(fp32(logits)); sel = top-k of P descending (ties -> lower expert id);
    /// w = normTopK ? v / sum(v) : v, rounded to <paramref name="dtype"/>.
    /// </summary>
    public void RouterForward(CudaStream stream, ScalarType dtype,
        DeviceRange logits,   // [T,E] dtype
        DeviceRange probs,    // [T,E] f32 out
        DeviceRange selected, // [T,k] i32 out
        DeviceRange weights,  // [T,k] dtype out
        int tokens, int experts, int topK, bool normTopK)
    {
        CheckStream(stream);
        int es = ElementSize(dtype);
        CheckRouterDims(tokens, experts, topK);
        long te = (long)tokens * experts, tk = (long)tokens * topK;
        Need(logits, te * es, nameof(logits), $"[T={tokens},E={experts}] {dtype}");
        Need(probs, te * 4, nameof(probs), $"[T={tokens},E={experts}] f32");
        Need(selected, tk * 4, nameof(selected), $"[T={tokens},k={topK}] i32");
        Need(weights, tk * es, nameof(weights), $"[T={tokens},k={topK}] {dtype}");
        if (tokens == 0) return;
        var args = new RouterSoftmaxTopKArgs
        {
            Logits = logits.Pointer, Probs = probs.Pointer, Selected = selected.Pointer, Weights = weights.Pointer,
            Tokens = tokens, Experts = experts, TopK = topK, NormTopK = normTopK ? 1 : 0,
        };
        Kernel(_routerForward, dtype, MoeKernelModules.Router, MoeKernelModules.RouterForwardEntry)
            .Launch(stream, new Dim3(CeilDiv(tokens, RouterBlock / 32)), new Dim3(RouterBlock), 0, in args);
    }

    /// <summary>
    /// Router backward, one warp per token (DESIGN.md): S = sum_j v_j, v_j = P[t,sel_j];
    /// dv_j = normTopK ? (dw_j - sum_i dw_i v_i / S) / S : dw_j; dP[sel_j] = dv_j; dL = P * (dP - sum_e P_e dP_e).
    /// </summary>
    public void RouterBackward(CudaStream stream, ScalarType dtype,
        DeviceRange probs,    // [T,E] f32 (forward softmax)
        DeviceRange selected, // [T,k] i32
        DeviceRange dWeights, // [T,k] f32
        DeviceRange dLogits,  // [T,E] dtype out (overwritten)
        int tokens, int experts, int topK, bool normTopK)
    {
        CheckStream(stream);
        int es = ElementSize(dtype);
        CheckRouterDims(tokens, experts, topK);
        long te = (long)tokens * experts, tk = (long)tokens * topK;
        Need(probs, te * 4, nameof(probs), $"[T={tokens},E={experts}] f32");
        Need(selected, tk * 4, nameof(selected), $"[T={tokens},k={topK}] i32");
        Need(dWeights, tk * 4, nameof(dWeights), $"[T={tokens},k={topK}] f32");
        Need(dLogits, te * es, nameof(dLogits), $"[T={tokens},E={experts}] {dtype}");
        if (tokens == 0) return;
        var args = new RouterSoftmaxTopKBackwardArgs
        {
            Probs = probs.Pointer, Selected = selected.Pointer, DWeights = dWeights.Pointer, DLogits = dLogits.Pointer,
            Tokens = tokens, Experts = experts, TopK = topK, NormTopK = normTopK ? 1 : 0,
        };
        Kernel(_routerBackward, dtype, MoeKernelModules.Router, MoeKernelModules.RouterBackwardEntry)
            .Launch(stream, new Dim3(CeilDiv(tokens, RouterBlock / 32)), new Dim3(RouterBlock), 0, in args);
    }

    /// <summary>Largest T for which <see cref="CanRouterLogitsGemv"/> says yes: each warp re-reads X (T x H) once per expert
    /// pair, which stays cheaper than the tiled GEMM's serial k-walk up to a few hundred tokens.</summary>
    public const int RouterLogitsGemvMaxTokens = 256;

    /// <summary>True when <see cref="RouterLogitsGemv"/> takes this call: 16-bit dtype, T in [1, <see cref="RouterLogitsGemvMaxTokens"/>],
    /// H a multiple of 8, every pointer 16-byte aligned.</summary>
    public static bool CanRouterLogitsGemv(ScalarType dtype, int tokens, int hidden, DeviceRange x, DeviceRange wr, DeviceRange logits) =>
        dtype is ScalarType.BFloat16 or ScalarType.Float16 && tokens is > 0 and <= RouterLogitsGemvMaxTokens && hidden > 0
        && hidden % 8 == 0 && x.Pointer % 16 == 0 && wr.Pointer % 16 == 0 && logits.Pointer % 16 == 0;

    /// <summary>
    /// Router logits for small T: <c>L[t, e] = Σ_h X[t, h]·Wr[e, h]</c>, fp32 accumulation (per lane in chunk order, then
    /// a fixed butterfly and the four warps in order: deterministic), one rounding to <paramref name="dtype"/>.
    /// Grid (⌈E/2⌉, ⌈T/8⌉) x 128 threads: two experts x eight tokens per CTA.
    /// Only where <see cref="CanRouterLogitsGemv"/> holds (the tiled grouped GEMM does the rest).
    /// </summary>
    public void RouterLogitsGemv(CudaStream stream, ScalarType dtype,
        DeviceRange x,       // [T,H] dtype
        DeviceRange wr,      // [E,H] dtype
        DeviceRange logits,  // [T,E] dtype out
        int tokens, int experts, int hidden)
    {
        CheckStream(stream);
        if (dtype is not (ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "The router GEMV takes BFloat16 or Float16.");
        NonNegative(tokens, nameof(tokens));
        if (experts < 1) throw new ArgumentOutOfRangeException(nameof(experts), experts, "E must be >= 1.");
        if (hidden < 8 || hidden % 8 != 0) throw new ArgumentOutOfRangeException(nameof(hidden), hidden, "H must be a positive multiple of 8.");
        Need(x, (long)tokens * hidden * 2, nameof(x), $"[T={tokens},H={hidden}] {dtype}");
        Need(wr, (long)experts * hidden * 2, nameof(wr), $"[E={experts},H={hidden}] {dtype}");
        Need(logits, (long)tokens * experts * 2, nameof(logits), $"[T={tokens},E={experts}] {dtype}");
        foreach ((DeviceRange r, string name) in new[] { (x, nameof(x)), (wr, nameof(wr)), (logits, nameof(logits)) })
            if (r.Pointer % 16 != 0) throw new ArgumentException($"{name} (0x{r.Pointer:x}) must be 16-byte aligned.", name);
        if (tokens == 0) return;
        var args = new RouterLogitsGemvArgs
        {
            X = x.Pointer, Wr = wr.Pointer, Logits = logits.Pointer, Tokens = tokens, Experts = experts, Hidden = hidden,
        };
        Kernel(_routerLogitsGemv, dtype, _ => MoeKernelModules.RouterLogitsGemv(), MoeKernelModules.RouterLogitsGemvEntry)
            .Launch(stream, new Dim3(CeilDiv(experts, 2), CeilDiv(tokens, 8)), new Dim3(128), 0, in args);
    }

    // ============================================================================================== routing indices
    /// <summary>
    /// m_sizes = histogram of sel; gather = stable argsort of sel (rows of one expert in increasing p); inverse[gather[r]] = r.
    /// Two launches, deterministic, no host sync. Ids must be in [0, E): an out-of-range id is not counted and leaves
    /// its gather/inverse entries unwritten. TK = 0 still writes m_sizes = 0.
    /// </summary>
    public void RoutingIndices(CudaStream stream,
        DeviceRange selected, // [TK] i32 (sel [T,k] flattened)
        DeviceRange mSizes,   // [E] i32 out
        DeviceRange gather,   // [TK] i32 out
        DeviceRange inverse,  // [TK] i32 out
        int tokenSlots, int experts)
    {
        CheckStream(stream);
        NonNegative(tokenSlots, nameof(tokenSlots));
        if (experts < 1 || experts > RoutingMaxExperts)
            throw new ArgumentOutOfRangeException(nameof(experts), experts, $"E must be in [1, {RoutingMaxExperts}].");
        if (tokenSlots > int.MaxValue - 4096)
            throw new ArgumentOutOfRangeException(nameof(tokenSlots), tokenSlots, "TK too large for 32-bit slot indices.");
        Need(selected, tokenSlots * 4L, nameof(selected), $"[TK={tokenSlots}] i32");
        Need(mSizes, experts * 4L, nameof(mSizes), $"[E={experts}] i32");
        Need(gather, tokenSlots * 4L, nameof(gather), $"[TK={tokenSlots}] i32");
        Need(inverse, tokenSlots * 4L, nameof(inverse), $"[TK={tokenSlots}] i32");
        var count = new RoutingCountArgs { Selected = selected.Pointer, MSizes = mSizes.Pointer, TokenSlots = tokenSlots, Experts = experts };
        RoutingCount().Launch(stream, new Dim3(1), new Dim3(RoutingBlock), experts * 4, in count);
        if (tokenSlots == 0) return;
        var scatter = new RoutingScatterArgs
        {
            Selected = selected.Pointer, MSizes = mSizes.Pointer, Gather = gather.Pointer, Inverse = inverse.Pointer,
            TokenSlots = tokenSlots, Experts = experts,
        };
        RoutingScatter().Launch(stream, new Dim3((uint)experts), new Dim3(RoutingBlock), 0, in scatter);
    }

    // ============================================================================================== gather rows
    /// <summary>dst[r, :] = src[gather[r] / k, :] (expert-ordered copy of the token rows; used when permute_x is off).</summary>
    public void GatherRows(CudaStream stream, ScalarType dtype,
        DeviceRange source, // [T,H] dtype, T = TK / k
        DeviceRange gather, // [TK] i32
        DeviceRange dest,   // [TK,H] dtype out
        int tokenSlots, int topK, int hidden)
    {
        CheckStream(stream);
        int es = ElementSize(dtype);
        NonNegative(tokenSlots, nameof(tokenSlots));
        NonNegative(hidden, nameof(hidden));
        if (topK < 1) throw new ArgumentOutOfRangeException(nameof(topK), topK, "k must be >= 1.");
        if (tokenSlots % topK != 0)
            throw new ArgumentException($"TK={tokenSlots} must be a multiple of k={topK}.", nameof(tokenSlots));
        long tokens = tokenSlots / topK;
        Need(source, tokens * hidden * es, nameof(source), $"[T={tokens},H={hidden}] {dtype}");
        Need(gather, tokenSlots * 4L, nameof(gather), $"[TK={tokenSlots}] i32");
        Need(dest, (long)tokenSlots * hidden * es, nameof(dest), $"[TK={tokenSlots},H={hidden}] {dtype}");
        if (tokenSlots == 0 || hidden == 0) return;
        var args = new GatherRowsArgs
        {
            Source = source.Pointer, Gather = gather.Pointer, Dest = dest.Pointer, TokenSlots = tokenSlots, TopK = topK,
            Hidden = hidden, Vectorised = Vectorisable(hidden, source, dest) ? 1 : 0,
        };
        Kernel(_gatherRows, dtype, MoeKernelModules.GatherRows, MoeKernelModules.GatherRowsEntry)
            .Launch(stream, new Dim3((uint)tokenSlots), new Dim3(RowBlock), 0, in args);
    }

    // ============================================================================================== SwiGLU
    /// <summary>a[r, c] = silu(g1[r, c]) * g1[r, I + c], fp32 math, one rounding to dtype.</summary>
    public void SiluMulForward(CudaStream stream, ScalarType dtype,
        DeviceRange gateUp, // [R,2I] dtype
        DeviceRange act,    // [R,I] dtype out
        int rows, int inter)
    {
        CheckStream(stream);
        int es = ElementSize(dtype);
        NonNegative(rows, nameof(rows));
        NonNegative(inter, nameof(inter));
        if (inter > int.MaxValue / 2) throw new ArgumentOutOfRangeException(nameof(inter), inter, "2I must fit in int.");
        Need(gateUp, (long)rows * 2 * inter * es, nameof(gateUp), $"[R={rows},2I={2L * inter}] {dtype}");
        Need(act, (long)rows * inter * es, nameof(act), $"[R={rows},I={inter}] {dtype}");
        if (rows == 0 || inter == 0) return;
        var args = new SiluMulArgs
        {
            GateUp = gateUp.Pointer, Act = act.Pointer, Rows = rows, Inter = inter,
            Vectorised = Vectorisable(inter, gateUp, act) ? 1 : 0,
        };
        Kernel(_siluMul, dtype, MoeKernelModules.SiluMul, MoeKernelModules.SiluMulEntry)
            .Launch(stream, new Dim3((uint)rows), new Dim3(RowBlock), 0, in args);
    }

    /// <summary>
    /// With g = g1[r, c], u = g1[r, I + c], s = sigmoid(g): dG1[r, c] = dA * u * s * (1 + g (1 - s)), dG1[r, I + c] = dA * g * s.
    /// </summary>
    public void SiluMulBackward(CudaStream stream, ScalarType dtype,
        DeviceRange gateUp,  // [R,2I] dtype (forward input)
        DeviceRange dAct,    // [R,I] dtype
        DeviceRange dGateUp, // [R,2I] dtype out (overwritten)
        int rows, int inter)
    {
        CheckStream(stream);
        int es = ElementSize(dtype);
        NonNegative(rows, nameof(rows));
        NonNegative(inter, nameof(inter));
        if (inter > int.MaxValue / 2) throw new ArgumentOutOfRangeException(nameof(inter), inter, "2I must fit in int.");
        Need(gateUp, (long)rows * 2 * inter * es, nameof(gateUp), $"[R={rows},2I={2L * inter}] {dtype}");
        Need(dAct, (long)rows * inter * es, nameof(dAct), $"[R={rows},I={inter}] {dtype}");
        Need(dGateUp, (long)rows * 2 * inter * es, nameof(dGateUp), $"[R={rows},2I={2L * inter}] {dtype}");
        if (rows == 0 || inter == 0) return;
        var args = new SiluMulBackwardArgs
        {
            GateUp = gateUp.Pointer, DAct = dAct.Pointer, DGateUp = dGateUp.Pointer, Rows = rows, Inter = inter,
            Vectorised = Vectorisable(inter, gateUp, dAct, dGateUp) ? 1 : 0,
        };
        Kernel(_siluMulBackward, dtype, MoeKernelModules.SiluMul, MoeKernelModules.SiluMulBackwardEntry)
            .Launch(stream, new Dim3((uint)rows), new Dim3(RowBlock), 0, in args);
    }

    // ============================================================================================== top-k combine
    /// <summary>y[t] = sum_{j in 0..k-1} w[t,j] * u[row(t*k+j)], fp32 accumulate in j order; row(p) = rowOfSlot null ? p : rowOfSlot[p].</summary>
    public void CombineForward(CudaStream stream, ScalarType dtype,
        DeviceRange expertOut, // [TK,H] dtype (U; expert order when rowOfSlot is given)
        DeviceRange rowOfSlot, // [TK] i32 (inverse) or Null = identity
        DeviceRange weights,   // [T,k] dtype
        DeviceRange output,    // [T,H] dtype out
        int tokens, int topK, int hidden)
    {
        CheckStream(stream);
        int es = ElementSize(dtype);
        CheckCombineDims(tokens, topK, hidden);
        long tk = (long)tokens * topK;
        Need(expertOut, tk * hidden * es, nameof(expertOut), $"[TK={tk},H={hidden}] {dtype}");
        Optional(rowOfSlot, tk * 4, nameof(rowOfSlot), $"[TK={tk}] i32");
        Need(weights, tk * es, nameof(weights), $"[T={tokens},k={topK}] {dtype}");
        Need(output, (long)tokens * hidden * es, nameof(output), $"[T={tokens},H={hidden}] {dtype}");
        if (tokens == 0 || hidden == 0) return;
        var args = new TopKCombineArgs
        {
            Expert = expertOut.Pointer, RowOfSlot = rowOfSlot.Pointer, Weights = weights.Pointer, Output = output.Pointer,
            Tokens = tokens, TopK = topK, Hidden = hidden, Vectorised = Vectorisable(hidden, expertOut, output) ? 1 : 0,
        };
        Kernel(_combine, dtype, MoeKernelModules.TopKCombine, MoeKernelModules.TopKCombineEntry)
            .Launch(stream, new Dim3((uint)tokens), new Dim3(RowBlock), 0, in args);
    }

    /// <summary>
    /// dU[row(p)] = w[p] * dY[t] (dtype, overwritten); dW[p] = &lt;dY[t], u[row(p)]&gt; (f32, overwritten, deterministic
    /// reduction), p = t*k + j.
    /// </summary>
    public void CombineBackward(CudaStream stream, ScalarType dtype,
        DeviceRange dOutput,   // [T,H] dtype
        DeviceRange expertOut, // [TK,H] dtype (forward U)
        DeviceRange rowOfSlot, // [TK] i32 (inverse) or Null = identity
        DeviceRange weights,   // [T,k] dtype
        DeviceRange dExpertOut,// [TK,H] dtype out, at row(p)
        DeviceRange dWeights,  // [T,k] f32 out
        int tokens, int topK, int hidden)
    {
        CheckStream(stream);
        int es = ElementSize(dtype);
        CheckCombineDims(tokens, topK, hidden);
        long tk = (long)tokens * topK;
        Need(dOutput, (long)tokens * hidden * es, nameof(dOutput), $"[T={tokens},H={hidden}] {dtype}");
        Need(expertOut, tk * hidden * es, nameof(expertOut), $"[TK={tk},H={hidden}] {dtype}");
        Optional(rowOfSlot, tk * 4, nameof(rowOfSlot), $"[TK={tk}] i32");
        Need(weights, tk * es, nameof(weights), $"[T={tokens},k={topK}] {dtype}");
        Need(dExpertOut, tk * hidden * es, nameof(dExpertOut), $"[TK={tk},H={hidden}] {dtype}");
        Need(dWeights, tk * 4, nameof(dWeights), $"[T={tokens},k={topK}] f32");
        if (tokens == 0) return;
        // NOTE: H = 0 still launches: dW = 0 must be written.
        var args = new TopKCombineBackwardArgs
        {
            DOutput = dOutput.Pointer, Expert = expertOut.Pointer, RowOfSlot = rowOfSlot.Pointer, Weights = weights.Pointer,
            DExpert = dExpertOut.Pointer, DWeights = dWeights.Pointer, Tokens = tokens, TopK = topK, Hidden = hidden,
            Vectorised = Vectorisable(hidden, dOutput, expertOut, dExpertOut) ? 1 : 0,
        };
        Kernel(_combineBackward, dtype, MoeKernelModules.TopKCombine, MoeKernelModules.TopKCombineBackwardEntry)
            .Launch(stream, new Dim3((uint)tokens), new Dim3(RowBlock), 0, in args);
    }

    // ============================================================================================== dX sum over k
    /// <summary>dX[t] = (sum_{j in 0..k-1} dXp[t*k+j]) + addend[t] (addend Null = 0); fp32, fixed order. dX may alias addend.</summary>
    public void SumOverTopK(CudaStream stream, ScalarType dtype,
        DeviceRange slotRows, // [TK,H] dtype, token-slot order
        DeviceRange addend,   // [T,H] dtype or Null
        DeviceRange output,   // [T,H] dtype out
        int tokens, int topK, int hidden)
    {
        CheckStream(stream);
        int es = ElementSize(dtype);
        CheckCombineDims(tokens, topK, hidden);
        long tk = (long)tokens * topK;
        Need(slotRows, tk * hidden * es, nameof(slotRows), $"[TK={tk},H={hidden}] {dtype}");
        Optional(addend, (long)tokens * hidden * es, nameof(addend), $"[T={tokens},H={hidden}] {dtype}");
        Need(output, (long)tokens * hidden * es, nameof(output), $"[T={tokens},H={hidden}] {dtype}");
        if (tokens == 0 || hidden == 0) return;
        var args = new SumOverTopKArgs
        {
            Slots = slotRows.Pointer, Addend = addend.Pointer, Output = output.Pointer, Tokens = tokens, TopK = topK,
            Hidden = hidden, Vectorised = Vectorisable(hidden, slotRows, addend, output) ? 1 : 0,
        };
        Kernel(_sumOverTopK, dtype, MoeKernelModules.SumOverTopK, MoeKernelModules.SumOverTopKEntry)
            .Launch(stream, new Dim3((uint)tokens), new Dim3(RowBlock), 0, in args);
    }

    // ============================================================================================== validation
    private void CheckStream(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        // NOTE: compare driver handles, not objects: two CudaContext objects may wrap the same primary context.
        if (!ReferenceEquals(stream.Context, Context) && stream.Context.Handle != Context.Handle)
            throw new ArgumentException($"The stream belongs to another context than these kernels ({Context}).", nameof(stream));
    }

    private static int ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 or ScalarType.Float16 => 2,
        ScalarType.Float32 => 4,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Storage dtype must be BFloat16, Float16 or Float32."),
    };

    private static void CheckRouterDims(int tokens, int experts, int topK)
    {
        NonNegative(tokens, nameof(tokens));
        if (experts < 1 || experts > RouterMaxExperts)
            throw new ArgumentOutOfRangeException(nameof(experts), experts, $"E must be in [1, {RouterMaxExperts}].");
        if (topK < 1 || topK > experts)
            throw new ArgumentOutOfRangeException(nameof(topK), topK, $"k must be in [1, E={experts}].");
    }

    private static void CheckCombineDims(int tokens, int topK, int hidden)
    {
        NonNegative(tokens, nameof(tokens));
        NonNegative(hidden, nameof(hidden));
        if (topK < 1) throw new ArgumentOutOfRangeException(nameof(topK), topK, "k must be >= 1.");
        if ((long)tokens * topK > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"T*k = {(long)tokens * topK} must fit in int.");
    }

    private static void NonNegative(int value, string name)
    {
        if (value < 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must be >= 0.");
    }

    private static void Need(DeviceRange range, long bytes, string name, string shape)
    {
        if (bytes == 0) return;
        if (range.IsNull) throw new ArgumentException($"{name} {shape} is a null device pointer.", name);
        if (range.Bytes != DeviceRange.UnknownSize && range.Bytes < bytes)
            throw new ArgumentException($"{name} must hold {shape} = {bytes} bytes; it has {range.Bytes}.", name);
    }

    private static void Optional(DeviceRange range, long bytes, string name, string shape)
    {
        if (!range.IsNull) Need(range, bytes, name, shape);
    }

    /// <summary>The row kernels move 8 elements per thread with 16-byte accesses when every row length is a multiple of 8
    /// (so every row start stays 16-byte aligned) and every base pointer is 16-byte aligned; otherwise element by element.</summary>
    private static bool Vectorisable(int count, DeviceRange a, DeviceRange b, DeviceRange c = default)
    {
        // NOTE: 8 elements = 16 bytes (16-bit dtypes) or 2 x 16 bytes (fp32): both need only 16-byte alignment.
        return count % 8 == 0 && a.Pointer % 16 == 0 && b.Pointer % 16 == 0 && c.Pointer % 16 == 0;
    }

    private static uint CeilDiv(int n, int d) => (uint)((n + d - 1) / d);

    // ============================================================================================== loading
    private static int Slot(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => 0,
        ScalarType.Float16 => 1,
        ScalarType.Float32 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Storage dtype must be BFloat16, Float16 or Float32."),
    };

    private PtxKernel<TArgs> Kernel<TArgs>(PtxKernel<TArgs>?[] cache, ScalarType dtype,
        Func<ScalarType, PtxModuleSpec> module, Func<ScalarType, string> entry) where TArgs : unmanaged
    {
        int slot = Slot(dtype);
        if (Volatile.Read(ref cache[slot]) is { } hit) return hit;
        lock (_gate)
        {
            if (cache[slot] is null) Volatile.Write(ref cache[slot], PtxModuleCache.GetKernel<TArgs>(Context, module(dtype), entry(dtype)));
            return cache[slot]!;
        }
    }

    private PtxKernel<RoutingCountArgs> RoutingCount()
    {
        if (Volatile.Read(ref _routingCount) is { } hit) return hit;
        lock (_gate)
        {
            if (_routingCount is null) Volatile.Write(ref _routingCount, PtxModuleCache.GetKernel<RoutingCountArgs>(Context, MoeKernelModules.RoutingIndices(), MoeKernelModules.RoutingCountEntry));
            return _routingCount;
        }
    }

    private PtxKernel<RoutingScatterArgs> RoutingScatter()
    {
        if (Volatile.Read(ref _routingScatter) is { } hit) return hit;
        lock (_gate)
        {
            if (_routingScatter is null) Volatile.Write(ref _routingScatter, PtxModuleCache.GetKernel<RoutingScatterArgs>(Context, MoeKernelModules.RoutingIndices(), MoeKernelModules.RoutingScatterEntry));
            return _routingScatter;
        }
    }
}
