using System.Runtime.InteropServices;
using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Blocks;

// The forward launch sequence of the expert-parallel block and its exchanges.
public sealed partial class ExpertParallelBlock
{
    /// <summary>
    /// Diagnostics hook (benchmark): called on the stream with "exchange_begin" / "exchange_end" around every
    /// exchange (counts with their host wait and planning, token rows, results, gradients, the all-reduce), e.g. to
    /// record CUDA events there. Null (the default) costs nothing.
    /// </summary>
    internal Action<CudaStream, string>? StepProbe { get; set; }

    private void Probe(CudaStream s, string step) => StepProbe?.Invoke(s, step);

    private void ForwardCore(CudaStream s, DeviceRange x /*[T,H]*/, DeviceRange y /*[T,H]*/, int tokens,
        DeviceRange selectedIn /*[T,k] or null*/, DeviceRange weightsIn /*[T,k] or null*/)
    {
        MoeConfig c = Config;
        ScalarType dt = DType;
        int h = c.HiddenSize, i = c.IntermediateSize, e = c.NumExperts, k = c.TopK, tk = tokens * k;
        ExpertParallelBuffers b = _buffers;
        if (b.TokensNeedGrowth(tokens, backward: false)) Drain(s, "the previous work, before the buffers grow");
        b.EnsureTokens(tokens, backward: false);
        int shapeClass = BlockWorkspaceLayout.ShapeClassTokens(Math.Max(1, tokens));
        DeviceRange logits = b.Logits!.AsRange(), probs = b.Probs!.AsRange();       // [T,E] dtype, [T,E] f32
        DeviceRange selOwn = b.Selected!.AsRange(), wOwn = b.RoutingWeights!.AsRange(); // [T,k] i32, [T,k] dtype
        DeviceRange mSizes = b.MSizes.AsRange();                                     // [E] i32
        DeviceRange gather = b.Gather!.AsRange(), inverse = b.Inverse!.AsRange();    // [TK] i32
        DeviceRange sendRows = b.SendRows!.AsRange(), expertOut = b.ExpertOut!.AsRange(); // [TK,H] dtype, expert order
        DeviceRange sel = selectedIn.IsNull ? selOwn : selectedIn;
        DeviceRange w = weightsIn.IsNull ? wOwn : weightsIn;

        // 1. routing, as the fused block: L = X·Wrᵀ (GEMV for small T), softmax/top-k/renorm, m_sizes/gather/inverse
        if (tokens > 0)
        {
            DeviceRange wr = _router.AsRange();
            if (MoeKernels.CanRouterLogitsGemv(dt, tokens, h, x, wr, logits))
                _kernels.RouterLogitsGemv(s, dt, x, wr, logits, tokens, e, h);
            else
                RunGemm(s, shapeClass, FusedGemmCall.NT(FusedGemm.RouterForward, x, wr, logits, RouterRows(tokens), e, h,
                    RowSource.Identity, RowTarget.Identity, DeviceRange.Null));
            _kernels.RouterForward(s, dt, logits, probs, selOwn, wOwn, tokens, e, k, c.NormTopKProb);
        }
        _kernels.RoutingIndices(s, sel, mSizes, gather, inverse, b.RoutingCounts.AsRange(), tk, e); // TK = 0 still writes m_sizes = 0

        // 2. count exchange and the plan (the host synchronisation)
        Probe(s, "exchange_begin");
        ExchangeCounts(s, tk);
        int rows = _plan.TotalReceived;
        b.EnsureRows(rows, backward: false); // the stream is drained here (the counts came back through it)
        UploadLocalTables(s);
        Probe(s, "exchange_end");

        // 3. Xp [TK,H] = X[gather/k] in expert order: destination d's rows are one slice
        _kernels.GatherRows(s, dt, x, gather, sendRows, tk, k, h);
        DeviceRange received = b.ReceivedRows!.AsRange(), returned = b.ReturnRows!.AsRange(); // [R,H] receive order
        ExchangeRows(s, sendRows, received, h, toExperts: true, "token rows to the experts' ranks");

        // 4. the local experts, with the fused block's GEMM calls (the same row modes, so the same kernels):
        //    G1 = Xp·Wgu[e]ᵀ (rows through the local gather), A = silu(G1a)⊙G1b, G2 = A·Wd[e]ᵀ in local expert order,
        //    then copied to receive order (returned[p] = G2[localInverse[p]])
        GroupedRows local = LocalRows(rows);
        int localClass = LocalShapeClass(rows);
        DeviceRange g1 = b.FirstGemm!.AsRange(), act = b.Intermediate!.AsRange(), g2 = b.LocalRows!.AsRange();
        RunGemm(s, localClass, FusedGemmCall.NT(FusedGemm.FirstForward, received, _gateUp.AsRange(), g1, local, 2 * i, h,
            RowSource.GatherToken, RowTarget.Identity, DeviceRange.Null));
        _kernels.SiluMulForward(s, dt, g1, act, rows, i);
        RunGemm(s, localClass, FusedGemmCall.NT(FusedGemm.SecondForward, act, _down.AsRange(), g2, local, h, i,
            RowSource.Identity, RowTarget.Identity, DeviceRange.Null));
        _kernels.GatherRows(s, dt, g2, b.LocalInverse!.AsRange(), returned, rows, 1, h);

        // 5. results back to the senders, into U in their expert order; 6. Y[t] = Σ_j w[t,j]·U[inverse[t*k+j]]
        ExchangeRows(s, returned, expertOut, h, toExperts: false, "expert outputs back to the tokens' ranks");
        _kernels.CombineForward(s, dt, expertOut, inverse, w, y, tokens, k, h);
        _saved = new SavedForward(tokens, x, sel, w, true);
    }

    /// <summary>One group of T rows for the router GEMMs (m_sizes [1] = iota[T]).</summary>
    private GroupedRows RouterRows(int tokens) => new(_buffers.Iota!.PointerAt(tokens), 0, tokens, 1, 1);

    /// <summary>The local experts' rows: local m_sizes [E_r], local gather [R] (k = 1: a gathered row is a receive row).</summary>
    private GroupedRows LocalRows(int rows) =>
        new(_buffers.LocalMSizes.DevicePointer, _buffers.LocalGather!.DevicePointer, rows, LocalExperts, 1);

    /// <summary>The tuner's shape class of the local GEMMs: R rows are R/k tokens' worth (the fused block's class at N = 1).</summary>
    private int LocalShapeClass(int rows) => BlockWorkspaceLayout.ShapeClassTokens(Math.Max(1, rows / Config.TopK));

    private void RunGemm(CudaStream s, int shapeClass, in FusedGemmCall call)
    {
        // NOTE: autotune times on the host (event synchronise): drain first, polled, so a failed peer whose rows an
        // NCCL kernel on this stream still waits for surfaces as an error, not as a synchronise that never returns.
        if (_tuner.NeedsTuning(call.Gemm, shapeClass)) Drain(s, $"the exchange before autotuning {call.Gemm}");
        call.Launch(_gemm, s, DType, _tuner.Choose(_gemm, s, DType, shapeClass, in call));
    }

    // ==== exchanges =================================================================================================

    /// <summary>
    /// Sends every destination d its slice of m_sizes (E_d counts), receives every source's counts for the local
    /// experts ([N,E_r]), brings both to the host (polled wait) and builds the plan.
    /// </summary>
    private void ExchangeCounts(CudaStream s, int tokenSlots)
    {
        ExpertParallelBuffers b = _buffers;
        int n = Partition.Ranks, el = LocalExperts;
        NcclCommunicator.GroupStart();
        try
        {
            for (int d = 0; d < n; d++)
            {
                (int offset, int length) = _plan.CountSlice(d);
                _comm.Send(b.MSizes.Slice(offset, length), length, NcclDataType.Int32, d, s);
            }
            for (int src = 0; src < n; src++)
                _comm.Recv(b.ReceivedCounts.Slice((long)src * el, el), el, NcclDataType.Int32, src, s);
        }
        finally
        {
            NcclCommunicator.GroupEnd();
        }
        _comm.WaitForCalls(Options.ExchangeTimeout, Options.Cancellation, "count exchange (ncclGroupEnd)");
        Span<int> hostMSizes = MemoryMarshal.Cast<byte, int>(b.HostMSizes.Span);
        Span<int> hostCounts = MemoryMarshal.Cast<byte, int>(b.HostReceivedCounts.Span);
        b.MSizes.CopyToHostAsync(hostMSizes, s);
        b.ReceivedCounts.CopyToHostAsync(hostCounts, s);
        _countsReady.Record(s);
        _comm.WaitFor(_countsReady, Options.ExchangeTimeout, Options.Cancellation, "count exchange");
        _plan.Build(hostMSizes, hostCounts, tokenSlots);
    }

    /// <summary>Local m_sizes [E_r], local gather and inverse [R] through pinned memory to the device (asynchronous).</summary>
    private void UploadLocalTables(CudaStream s)
    {
        ExpertParallelBuffers b = _buffers;
        // NOTE: the pinned tables are rewritten here: the previous upload (possibly on another stream) must be done.
        if (_tablesPending) _comm.WaitFor(_tablesUploaded, Options.ExchangeTimeout, Options.Cancellation, "the previous table upload");
        int el = LocalExperts, rows = _plan.TotalReceived;
        Span<int> tables = MemoryMarshal.Cast<byte, int>(b.HostLocalTables!.Span);
        _plan.LocalExpertRows.CopyTo(tables);
        _plan.LocalGather.CopyTo(tables[el..]);
        _plan.LocalInverse.CopyTo(tables[(el + rows)..]);
        b.LocalMSizes.CopyFromHostAsync(tables[..el], s);
        b.LocalGather!.CopyFromHostAsync(tables.Slice(el, rows), s);
        b.LocalInverse!.CopyFromHostAsync(tables.Slice(el + rows, rows), s);
        _tablesUploaded.Record(s);
        _tablesPending = true;
    }

    /// <summary>
    /// One grouped all-to-all of rows along the plan: toExperts sends the sender's expert-ordered slices
    /// (<see cref="ExchangePlan.SendOffsets"/>) and receives source-major rows (<see cref="ExchangePlan.ReceiveOffsets"/>);
    /// the other direction swaps the two. Empty messages are skipped on both sides (each side knows both counts).
    /// </summary>
    private void ExchangeRows(CudaStream s, DeviceRange source, DeviceRange destination, int rowElements, bool toExperts, string what)
    {
        Probe(s, "exchange_begin");
        ReadOnlySpan<int> outCounts = toExperts ? _plan.SendCounts : _plan.ReceiveCounts;
        ReadOnlySpan<int> outOffsets = toExperts ? _plan.SendOffsets : _plan.ReceiveOffsets;
        ReadOnlySpan<int> inCounts = toExperts ? _plan.ReceiveCounts : _plan.SendCounts;
        ReadOnlySpan<int> inOffsets = toExperts ? _plan.ReceiveOffsets : _plan.SendOffsets;
        NcclDataType type = NcclCommunicator.DataTypeOf(DType);
        long rowBytes = (long)rowElements * DType.SizeOf();
        NcclCommunicator.GroupStart();
        try
        {
            for (int d = 0; d < outCounts.Length; d++)
                if (outCounts[d] > 0)
                    _comm.Send(Rows(source, outOffsets[d], outCounts[d], rowBytes), (long)outCounts[d] * rowElements, type, d, s);
            for (int src = 0; src < inCounts.Length; src++)
                if (inCounts[src] > 0)
                    _comm.Recv(Rows(destination, inOffsets[src], inCounts[src], rowBytes), (long)inCounts[src] * rowElements, type, src, s);
        }
        finally
        {
            NcclCommunicator.GroupEnd();
        }
        _comm.WaitForCalls(Options.ExchangeTimeout, Options.Cancellation, what);
        Probe(s, "exchange_end");
    }

    /// <summary>Rows [first, first + count) of a row-major buffer, with their byte size (checked against the buffer).</summary>
    private static DeviceRange Rows(DeviceRange buffer, int first, int count, long rowBytes)
    {
        long offset = first * rowBytes, bytes = count * rowBytes;
        if (buffer.Bytes != DeviceRange.UnknownSize && offset + bytes > buffer.Bytes)
            throw new InvalidOperationException($"Exchange rows [{first}, {first + count}) do not fit in {buffer}.");
        return new DeviceRange(buffer.Pointer + (ulong)offset, bytes);
    }
}
