using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Blocks;

// The backward launch sequence of the expert-parallel block (the forward's in reverse, along the same plan).
public sealed partial class ExpertParallelBlock
{
    private void BackwardCore(CudaStream s, DeviceRange dY /*[T,H]*/, DeviceRange dX /*[T,H]*/, DeviceRange dRouter /*[E,H]*/,
        DeviceRange dGateUp /*[E_r,2I,H]*/, DeviceRange dDown /*[E_r,H,I]*/)
    {
        MoeConfig c = Config;
        ScalarType dt = DType;
        int tokens = _saved.Tokens, rows = _plan.TotalReceived;
        int h = c.HiddenSize, i = c.IntermediateSize, e = c.NumExperts, k = c.TopK, tk = tokens * k;
        ExpertParallelBuffers b = _buffers;
        if (b.TokensNeedGrowth(tokens, backward: true) || b.RowsNeedGrowth(rows, backward: true))
            Drain(s, "the forward, before the backward buffers are allocated");
        b.EnsureTokens(tokens, backward: true);
        b.EnsureRows(rows, backward: true);
        int shapeClass = BlockWorkspaceLayout.ShapeClassTokens(Math.Max(1, tokens)), localClass = LocalShapeClass(rows);
        DeviceRange x = _saved.X, sel = _saved.Selected, w = _saved.Weights;
        DeviceRange probs = b.Probs!.AsRange(), inverse = b.Inverse!.AsRange();
        DeviceRange u = b.ExpertOut!.AsRange();            // [TK,H] expert order (the forward's results)
        DeviceRange dU = b.DExpertOut!.AsRange();          // [TK,H] expert order
        DeviceRange dWeights = b.DRoutingWeights!.AsRange(); // [T,k] f32
        DeviceRange dXpBack = b.SendRows!.AsRange();       // [TK,H] expert order: dXp rows back from the experts
        DeviceRange dXpSlots = b.DXpSlots!.AsRange();      // [TK,H] token-slot order
        DeviceRange dLogits = b.DLogits!.AsRange(), dXRouter = b.DXRouter!.AsRange();
        DeviceRange received = b.ReceivedRows!.AsRange();  // [R,H] receive order: the forward's X rows
        DeviceRange dReceived = b.ReceivedGrad!.AsRange(); // [R,H] receive order: dU rows (then the Xp copy)
        DeviceRange dXpLocal = b.ReturnRows!.AsRange();    // [R,H] receive order: dXp rows
        DeviceRange g1 = b.FirstGemm!.AsRange(), act = b.Intermediate!.AsRange();
        DeviceRange dAct = b.DIntermediate!.AsRange(), dG1 = b.DFirstGemm!.AsRange();
        GroupedRows local = LocalRows(rows);

        // 1. dU[row(p)] = w[p]·dY[t], dw[p] = <dY[t], U[row(p)]>; dU rows to the experts' ranks
        _kernels.CombineBackward(s, dt, dY, u, inverse, w, dU, dWeights, tokens, k, h);
        ExchangeRows(s, dU, dReceived, h, toExperts: true, "output gradients to the experts' ranks");

        // 2. the local experts, with the fused block's GEMM calls: dG2 = dU rows in local expert order (copied through
        //    the local gather), GEMM2 dX and dW, SwiGLU backward, GEMM1 dX scattered to receive order, GEMM1 dW (on sm_80
        //    from an Xp copy in local expert order, made in dReceived's buffer, free by then)
        DeviceRange localGather = b.LocalGather!.AsRange(), dG2 = b.LocalRows!.AsRange();
        _kernels.GatherRows(s, dt, dReceived, localGather, dG2, rows, 1, h);
        RunGemm(s, localClass, FusedGemmCall.NN(FusedGemm.SecondBackwardData, dG2, _down.AsRange(), dAct, local, h, i,
            RowSource.Identity, RowTarget.Identity));
        RunGemm(s, localClass, FusedGemmCall.TN(FusedGemm.SecondBackwardWeight, dG2, act, dDown, local, h, i,
            RowSource.Identity, RowSource.Identity));
        _kernels.SiluMulBackward(s, dt, g1, dAct, dG1, rows, i);
        RunGemm(s, localClass, FusedGemmCall.NN(FusedGemm.FirstBackwardData, dG1, _gateUp.AsRange(), dXpLocal, local, 2 * i, h,
            RowSource.Identity, RowTarget.Scatter));
        // NOTE: the fused block's rule (without PermuteX): the sm_80 dW reads a contiguous Xp copy, the sm_90a dW gathers
        // the rows itself (here through the local gather: GatherToken with k = 1).
        DeviceRange xp = received;
        RowSource xpRows = RowSource.GatherToken;
        if (!_gemm.WeightGradientGathersRows)
        {
            xp = dReceived;
            _kernels.GatherRows(s, dt, received, localGather, xp, rows, 1, h);
            xpRows = RowSource.Identity;
        }
        RunGemm(s, localClass, FusedGemmCall.TN(FusedGemm.FirstBackwardWeight, dG1, xp, dGateUp, local, 2 * i, h,
            RowSource.Identity, xpRows));

        // 3. dXp rows back into the sender's expert order, then to token-slot order (dXpSlots[p] = dXpBack[inverse[p]])
        ExchangeRows(s, dXpLocal, dXpBack, h, toExperts: false, "input gradients back to the tokens' ranks");
        _kernels.GatherRows(s, dt, dXpBack, inverse, dXpSlots, tk, 1, h);

        // 4. router: dL from dw, dWr = dLᵀ·X (this rank's tokens; split over row chunks as in the fused block, the same
        //    plan), dXr = dL·Wr; dX[t] = dXr[t] + Σ_j dXp[t*k+j]
        _kernels.RouterBackward(s, dt, probs, sel, dWeights, dLogits, tokens, e, k, c.NormTopKProb);
        GroupedRows routerRows = RouterRows(tokens);
        DeviceRange partials = b.RouterWeightPartials?.AsRange() ?? DeviceRange.Null; // [G,E,H] f32
        FusedGemmCall routerDw = b.RouterSplit!.WeightGradCall(tokens, dt, Options.Kernels, dLogits, x, partials, dRouter, routerRows, e, h);
        RunGemm(s, shapeClass, routerDw);
        RouterRowSplit.ReduceAfter(_kernels, s, dt, in routerDw, dRouter, e, h);
        if (tokens > 0)
            RunGemm(s, shapeClass, FusedGemmCall.NN(FusedGemm.RouterBackwardData, dLogits, _router.AsRange(), dXRouter, routerRows, e, h,
                RowSource.Identity, RowTarget.Identity));
        _kernels.SumOverTopK(s, dt, dXpSlots, dXRouter, dX, tokens, k, h);

        // 5. dWr summed over ranks (every rank's tokens), in place
        Probe(s, "exchange_begin");
        _comm.AllReduce(dRouter, dRouter, (long)e * h, NcclCommunicator.DataTypeOf(dt), NcclReduceOp.Sum, s);
        _comm.WaitForCalls(Options.ExchangeTimeout, Options.Cancellation, "router gradient all-reduce");
        Probe(s, "exchange_end");
    }
}
