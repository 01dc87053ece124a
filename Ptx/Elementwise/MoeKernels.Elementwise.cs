using MoeNative.Interop;
using static MoeNative.Interop.DeviceRangeChecks;

namespace MoeNative.Ptx;

// Elementwise kernels: row gather, SwiGLU forward/backward, top-k combine forward/backward, dX sum over k.
internal sealed partial class MoeKernels
{
    private const int RowBlock = 128;     // threads of every row kernel (8 elements each per step)

    /// <summary>Threads of a SwiGLU row kernel's block for I columns (8 per thread per step): the fewest steps of at most
    /// <see cref="RowBlock"/> threads, then the fewest whole warps that cover a step, so no warp idles on the row
    /// (I = 768 and 1536: 96 threads, one and two steps) and 12 rather than 9 CTAs of the routed backward (56
    /// registers) fit an SM. 32 for I = 0 (the routed backward still writes dw).</summary>
    internal static int SwiGluRowThreads(int inter)
    {
        long chunks = Math.Max(1, ((long)inter + 7) / 8);
        long steps = (chunks + RowBlock - 1) / RowBlock;
        long perStep = (chunks + steps - 1) / steps;
        return (int)((perStep + 31) / 32 * 32);
    }

    private readonly PtxKernel<GatherRowsArgs>?[] _gatherRows = new PtxKernel<GatherRowsArgs>?[3];
    private readonly PtxKernel<SiluMulArgs>?[] _siluMul = new PtxKernel<SiluMulArgs>?[3];
    private readonly PtxKernel<SiluMulBackwardArgs>?[] _siluMulBackward = new PtxKernel<SiluMulBackwardArgs>?[3];
    private readonly PtxKernel<SiluMulBackwardRoutedArgs>?[] _siluMulBackwardRouted = new PtxKernel<SiluMulBackwardRoutedArgs>?[3];
    private readonly PtxKernel<TopKCombineArgs>?[] _combine = new PtxKernel<TopKCombineArgs>?[3];
    private readonly PtxKernel<TopKCombineBackwardArgs>?[] _combineBackward = new PtxKernel<TopKCombineBackwardArgs>?[3];
    private readonly PtxKernel<SumOverTopKArgs>?[] _sumOverTopK = new PtxKernel<SumOverTopKArgs>?[3];

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
        int es = CheckSiluMul(stream, dtype, gateUp, rows, inter);
        Need(act, (long)rows * inter * es, nameof(act), $"[R={rows},I={inter}] {dtype}");
        if (rows == 0 || inter == 0) return;
        var args = new SiluMulArgs
        {
            GateUp = gateUp.Pointer, Act = act.Pointer, Rows = rows, Inter = inter,
            Vectorised = Vectorisable(inter, gateUp, act) ? 1 : 0,
        };
        Kernel(_siluMul, dtype, MoeKernelModules.SiluMul, MoeKernelModules.SiluMulEntry)
            .Launch(stream, new Dim3((uint)rows), new Dim3((uint)SwiGluRowThreads(inter)), 0, in args);
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
        int es = CheckSiluMul(stream, dtype, gateUp, rows, inter);
        Need(dAct, (long)rows * inter * es, nameof(dAct), $"[R={rows},I={inter}] {dtype}");
        Need(dGateUp, (long)rows * 2 * inter * es, nameof(dGateUp), $"[R={rows},2I={2L * inter}] {dtype}");
        if (rows == 0 || inter == 0) return;
        var args = new SiluMulBackwardArgs
        {
            GateUp = gateUp.Pointer, DAct = dAct.Pointer, DGateUp = dGateUp.Pointer, Rows = rows, Inter = inter,
            Vectorised = Vectorisable(inter, gateUp, dAct, dGateUp) ? 1 : 0,
        };
        Kernel(_siluMulBackward, dtype, MoeKernelModules.SiluMul, MoeKernelModules.SiluMulBackwardEntry)
            .Launch(stream, new Dim3((uint)rows), new Dim3((uint)SwiGluRowThreads(inter)), 0, in args);
    }

    /// <summary>
    /// The SwiGLU backward with the routing weight applied here (the fused block's backward without a combine
    /// backward): per expert-ordered row r, p = gather[r], w = weights[p], a = rnd(silu(g) u) (the forward's A):
    /// dG1[r] = SiluMulBackward's [dg | du] of dA = w · dAct[r] (f32); actW[r] = rnd(w · a) (GEMM2 dW's operand);
    /// dWeights[p] = &lt;dAct[r], a&gt; (f32, deterministic reduction) = &lt;dY[t], U[r]&gt; when dAct[r] = dY[t]·Wd[e].
    /// </summary>
    public void SiluMulBackwardRouted(CudaStream stream, ScalarType dtype,
        DeviceRange gateUp,   // [R,2I] dtype (forward G1)
        DeviceRange dAct,     // [R,I] dtype: dA_u, not yet scaled by the routing weight
        DeviceRange gather,   // [R] i32: token slot of each expert-ordered row (a permutation of 0..R-1)
        DeviceRange weights,  // [R] dtype: routing weights in token-slot order ([T,k])
        DeviceRange dGateUp,  // [R,2I] dtype out (overwritten)
        DeviceRange actW,     // [R,I] dtype out (overwritten)
        DeviceRange dWeights, // [R] f32 out (overwritten, every slot)
        int rows, int inter)
    {
        int es = CheckSiluMul(stream, dtype, gateUp, rows, inter);
        Need(dAct, (long)rows * inter * es, nameof(dAct), $"[R={rows},I={inter}] {dtype}");
        Need(gather, (long)rows * 4, nameof(gather), $"[R={rows}] i32");
        Need(weights, (long)rows * es, nameof(weights), $"[R={rows}] {dtype}");
        Need(dGateUp, (long)rows * 2 * inter * es, nameof(dGateUp), $"[R={rows},2I={2L * inter}] {dtype}");
        Need(actW, (long)rows * inter * es, nameof(actW), $"[R={rows},I={inter}] {dtype}");
        Need(dWeights, (long)rows * 4, nameof(dWeights), $"[R={rows}] f32");
        if (rows == 0) return;
        // NOTE: I = 0 still launches: dWeights = 0 must be written.
        var args = new SiluMulBackwardRoutedArgs
        {
            GateUp = gateUp.Pointer, DAct = dAct.Pointer, Gather = gather.Pointer, Weights = weights.Pointer,
            DGateUp = dGateUp.Pointer, ActW = actW.Pointer, DWeights = dWeights.Pointer, Rows = rows, Inter = inter,
            Vectorised = Vectorisable(inter, gateUp, dAct, dGateUp) && actW.Pointer % 16 == 0 ? 1 : 0,
        };
        Kernel(_siluMulBackwardRouted, dtype, MoeKernelModules.SiluMul, MoeKernelModules.SiluMulBackwardRoutedEntry)
            .Launch(stream, new Dim3((uint)rows), new Dim3((uint)SwiGluRowThreads(inter)), 0, in args);
    }

    /// <summary>The checks the SwiGLU forward and backward share (stream, dtype, R and I, G1 [R,2I]); returns the element size.</summary>
    private int CheckSiluMul(CudaStream stream, ScalarType dtype, DeviceRange gateUp, int rows, int inter)
    {
        CheckStream(stream);
        int es = ElementSize(dtype);
        NonNegative(rows, nameof(rows));
        NonNegative(inter, nameof(inter));
        if (inter > int.MaxValue / 2) throw new ArgumentOutOfRangeException(nameof(inter), inter, "2I must fit in int.");
        Need(gateUp, (long)rows * 2 * inter * es, nameof(gateUp), $"[R={rows},2I={2L * inter}] {dtype}");
        return es;
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
        if (!rowOfSlot.IsNull) Need(rowOfSlot, tk * 4, nameof(rowOfSlot), $"[TK={tk}] i32");
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
        if (!rowOfSlot.IsNull) Need(rowOfSlot, tk * 4, nameof(rowOfSlot), $"[TK={tk}] i32");
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
        if (!addend.IsNull) Need(addend, (long)tokens * hidden * es, nameof(addend), $"[T={tokens},H={hidden}] {dtype}");
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

    // ============================================================================================== checks
    private static void CheckCombineDims(int tokens, int topK, int hidden)
    {
        NonNegative(tokens, nameof(tokens));
        NonNegative(hidden, nameof(hidden));
        if (topK < 1) throw new ArgumentOutOfRangeException(nameof(topK), topK, "k must be >= 1.");
        if ((long)tokens * topK > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"T*k = {(long)tokens * topK} must fit in int.");
    }

    /// <summary>The row kernels move 8 elements per thread with 16-byte accesses when every row length is a multiple of 8
    /// (so every row start stays 16-byte aligned) and every base pointer is 16-byte aligned; otherwise element by element.</summary>
    private static bool Vectorisable(int count, DeviceRange a, DeviceRange b, DeviceRange c = default)
    {
        // NOTE: 8 elements = 16 bytes (16-bit dtypes) or 2 x 16 bytes (fp32): both need only 16-byte alignment.
        return count % 8 == 0 && a.Pointer % 16 == 0 && b.Pointer % 16 == 0 && c.Pointer % 16 == 0;
    }
}
