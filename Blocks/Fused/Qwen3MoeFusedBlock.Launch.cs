using System.Runtime.InteropServices;
using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Blocks;

// The launch sequences of the fused block (forward and backward, kernel by kernel) and its grow-only workspaces.
public sealed partial class Qwen3MoeFusedBlock
{
    // ==== launch sequences ==========================================================================================

    private void ForwardCore(CudaStream s, DeviceRange x /*[T,H]*/, DeviceRange y /*[T,H]*/, int tokens, DeviceRange selectedIn /*[T,k] or null*/, DeviceRange weightsIn /*[T,k] or null*/)
    {
        MoeConfig c = Config;
        ScalarType dt = DType;
        int h = c.HiddenSize, i = c.IntermediateSize, e = c.NumExperts, k = c.TopK, tk = tokens * k;
        int shapeClass = BlockWorkspaceLayout.ShapeClassTokens(tokens);
        BlockWorkspace ws = EnsureForwardWorkspace(tokens);
        DeviceRange logits = ws.Range(BlockBuffer.Logits);            // [T,E]  dtype
        DeviceRange probs = ws.Range(BlockBuffer.Probs);              // [T,E]  f32
        DeviceRange selOwn = ws.Range(BlockBuffer.Selected);          // [T,k]  i32
        DeviceRange wOwn = ws.Range(BlockBuffer.RoutingWeights);      // [T,k]  dtype
        DeviceRange mSizes = ws.Range(BlockBuffer.MSizes);            // [E]    i32
        DeviceRange gather = ws.Range(BlockBuffer.Gather);            // [TK]   i32
        DeviceRange inverse = ws.Range(BlockBuffer.Inverse);          // [TK]   i32
        DeviceRange routingCounts = ws.Range(BlockBuffer.RoutingCounts); // [64,E] i32 scratch
        DeviceRange g1 = ws.Range(BlockBuffer.FirstGemm);             // [TK,2I] dtype, expert order
        DeviceRange act = ws.Range(BlockBuffer.Intermediate);         // [TK,I]  dtype, expert order
        DeviceRange g2 = ws.Range(BlockBuffer.SecondGemm);            // [TK,H]  dtype, expert order (token-slot order with PermuteY)
        var routerRows = new GroupedRows(_iota!.PointerAt(tokens), 0, tokens, 1, 1); // one group of T rows
        var expertRows = new GroupedRows(mSizes.Pointer, gather.Pointer, tk, e, k);

        DeviceRange wr = _weights.GateRange;
        bool decode = _decode.Applies(tokens, x);
        DeviceRange sel = selectedIn.IsNull ? selOwn : selectedIn;
        DeviceRange w = weightsIn.IsNull ? wOwn : weightsIn;
        bool routedInOneLaunch = decode && selectedIn.IsNull && weightsIn.IsNull && _decode.RoutesInOneLaunch(tokens, x, wr, logits);
        if (routedInOneLaunch)
        {
            // 1-3 for a decode step that routes itself: one launch writes L, probs, sel, w, m_sizes, gather, inverse
            _decode.Route(_kernels, s, x, wr, logits, probs, selOwn, wOwn, mSizes, gather, inverse, tokens);
            Probe(s, "routing_decode");
        }
        else
        {
            // 1. router logits L = X·Wrᵀ: a GEMV kernel for small T (a tiled GEMM would walk H in series on one or two
            //    CTAs), else the grouped NT GEMM with one group
            if (MoeKernels.CanRouterLogitsGemv(dt, tokens, h, x, wr, logits))
                _kernels.RouterLogitsGemv(s, dt, x, wr, logits, tokens, e, h);
            else
                RunGemm(s, shapeClass, FusedGemmCall.NT(FusedGemm.RouterForward, x, wr, logits, routerRows, e, h, RowSource.Identity, RowTarget.Identity, DeviceRange.Null));
            Probe(s, "router_logits");
            // 2. softmax (fp32), top-k, renorm, cast
            _kernels.RouterForward(s, dt, logits, probs, selOwn, wOwn, tokens, e, k, c.NormTopKProb);
            Probe(s, "router_softmax_topk");
            // 3. m_sizes, stable gather, inverse
            _kernels.RoutingIndices(s, sel, mSizes, gather, inverse, routingCounts, tk, e);
            Probe(s, "routing_indices");
        }
        // 4-8 for few tokens: the decode kernels (two launches stream the hit experts' weights once) write the same
        //    G1, A, G2 and Y as the grouped path below
        if (decode)
        {
            _decode.Forward(_kernels, s, x, _weights.GateUpProjRange, _weights.DownProjRange, mSizes, gather, inverse, w, g1, act, g2, y, tokens, routedInOneLaunch);
            Probe(s, "decode_experts");
            _saved = new SavedForward(tokens, x, sel, w, true);
            return;
        }
        // 4. Xp = X[gather/k]: always fused into GEMM1's loads (a(r) = gather[r]/k), with or without PermuteX: the
        //    same A values as a gathered copy (bit-identical G1), without the copy's TK·H writes and reads. (A copy in
        //    expert order first, read by TMA, made GEMM1 3% faster and cost more than that: docs/PERF.md v47.)
        DeviceRange a1 = x;
        RowSource a1Rows = RowSource.GatherToken;
        // 5. G1 = Xp·Wgu[e]ᵀ, 6. A = silu(G1[:, :I]) ⊙ G1[:, I:]: on an sm_90a tile one launch (SwiGLU epilogue;
        //    G1 written only for a backward; I a multiple of 8), else the GEMM then the SiluMul kernel (same bits)
        DeviceRange wgu = _weights.GateUpProjRange;
        var gemm1 = FusedGemmCall.NT(FusedGemm.FirstForward, a1, wgu, g1, expertRows, 2 * i, h, a1Rows, RowTarget.Identity, DeviceRange.Null);
        GemmConfig? gemm1Config = _tuner.Choose(_gemm, s, dt, shapeClass, in gemm1);
        if (GroupedGemm.FusedEpiloguesFit(i) && gemm1.Sm90aConfig(_gemm, dt, gemm1Config) is { } hopper1)
        {
            _gemm.ForwardNTSwiGlu(s, dt, hopper1, a1, wgu, act, Options.InferenceOnly ? DeviceRange.Null : g1, expertRows, i, h, a1Rows);
            Probe(s, "gemm1_swiglu");
        }
        else
        {
            gemm1.Launch(_gemm, s, dt, gemm1Config);
            Probe(s, "gemm1");
            _kernels.SiluMulForward(s, dt, g1, act, tk, i);
            Probe(s, "silu_mul");
        }
        // 7. G2 = A·Wd[e]ᵀ (scatter to token-slot order with PermuteY; × w with FuseMulPost)
        DeviceRange wd = _weights.DownProjRange;
        RowTarget g2Rows = Options.PermuteY ? RowTarget.Scatter : RowTarget.Identity;
        DeviceRange rowScale = Options.FuseMulPost ? w : DeviceRange.Null;
        RunGemm(s, shapeClass, FusedGemmCall.NT(FusedGemm.SecondForward, act, wd, g2, expertRows, h, i, RowSource.Identity, g2Rows, rowScale));
        Probe(s, "gemm2");
        // 8. Y[t] = Σ_j w[t,j]·U[t*k+j]
        DeviceRange rowOfSlot = Options.PermuteY ? DeviceRange.Null : inverse;
        DeviceRange combineWeights = Options.FuseMulPost ? _ones!.AsRange() : w;
        _kernels.CombineForward(s, dt, g2, rowOfSlot, combineWeights, y, tokens, k, h);
        Probe(s, "combine");

        _saved = new SavedForward(tokens, x, sel, w, true);
    }

    private void BackwardCore(CudaStream s, DeviceRange dY /*[T,H]*/, DeviceRange dX /*[T,H]*/, DeviceRange dRouter /*[E,H]*/,
        DeviceRange dGateUp /*[E,2I,H]*/, DeviceRange dDown /*[E,H,I]*/)
    {
        MoeConfig c = Config;
        ScalarType dt = DType;
        int tokens = _saved.Tokens;
        int h = c.HiddenSize, i = c.IntermediateSize, e = c.NumExperts, k = c.TopK, tk = tokens * k;
        int shapeClass = BlockWorkspaceLayout.ShapeClassTokens(tokens);
        BlockWorkspace fw = _forwardWorkspace!;
        BlockWorkspace bw = EnsureBackwardWorkspace(tokens);
        DeviceRange x = _saved.X, sel = _saved.Selected, w = _saved.Weights;
        DeviceRange probs = fw.Range(BlockBuffer.Probs);
        DeviceRange mSizes = fw.Range(BlockBuffer.MSizes), gather = fw.Range(BlockBuffer.Gather);
        DeviceRange g1 = fw.Range(BlockBuffer.FirstGemm);             // [TK,2I]
        DeviceRange dWeights = bw.Range(BlockBuffer.DRoutingWeights); // [T,k] f32
        DeviceRange dAct = bw.Range(BlockBuffer.DIntermediate);       // [TK,I]
        DeviceRange dG1 = bw.Range(BlockBuffer.DFirstGemm);           // [TK,2I]
        DeviceRange dXpSlots = bw.Range(BlockBuffer.DXPermutedSlotOrder); // [TK,H] token-slot order
        DeviceRange dLogits = bw.Range(BlockBuffer.DLogits);          // [T,E]
        DeviceRange dXRouter = bw.Range(BlockBuffer.DXRouter);        // [T,H]
        var routerRows = new GroupedRows(_iota!.PointerAt(tokens), 0, tokens, 1, 1);
        var expertRows = new GroupedRows(mSizes.Pointer, gather.Pointer, tk, e, k);
        DeviceRange wr = _weights.GateRange, wgu = _weights.GateUpProjRange, wd = _weights.DownProjRange;

        if (RoutedSwiGluBackward)
        {
            // 1-4 without dU = w·dY (the combine backward's [TK,H] write and two reads): GEMM2's dX and dW read the dY
            //    rows themselves (a(r) = gather[r]/k), and the routing weight enters in the SwiGLU backward:
            // 2. GEMM2 dX, unscaled: dA_u[r] = dY[t]·Wd[e]
            RunGemm(s, shapeClass, FusedGemmCall.NN(FusedGemm.SecondBackwardData, dY, wd, dAct, expertRows, h, i, RowSource.GatherToken, RowTarget.Identity));
            Probe(s, "bwd_gemm2_dx");
            // 4. dG1 = dSwiGLU(G1, w·dA_u); w·A for GEMM2 dW; dw[p] = <dA_u[r], A[r]> (= <dY[t], U[r]>)
            DeviceRange actW = bw.Range(BlockBuffer.ScaledIntermediate); // [TK,I]
            _kernels.SiluMulBackwardRouted(s, dt, g1, dAct, gather, w, dG1, actW, dWeights, tk, i);
            Probe(s, "bwd_silu_mul_routed");
            // 3. GEMM2 dW: dWd[e] = Σ_{r∈e} dY[t]ᵀ (w·A)[r]  (= Σ dU[r]ᵀ A[r])
            RunGemm(s, shapeClass, FusedGemmCall.TN(FusedGemm.SecondBackwardWeight, dY, actW, dDown, expertRows, h, i, RowSource.GatherToken, RowSource.Identity));
            Probe(s, "bwd_gemm2_dw");
        }
        else
            BackwardThroughCombine(s, dY, dDown, dWeights, dAct, dG1, expertRows, shapeClass);
        // 5. GEMM1 dX: dXp[r] = dG1[r]·Wgu[e], scattered by the epilogue to token-slot order (row gather[r]) with or
        //    without PermuteX: the same values as an expert-order result unpermuted by a copy, without the copy's
        //    TK·H reads and writes (80 us at T = 4096 on an H200, docs/PERF.md)
        RunGemm(s, shapeClass, FusedGemmCall.NN(FusedGemm.FirstBackwardData, dG1, wgu, dXpSlots, expertRows, 2 * i, h, RowSource.Identity, RowTarget.Scatter));
        Probe(s, "bwd_gemm1_dx");
        // 6. GEMM1 dW: dWgu[e] = Σ_{r∈e} dG1[r]ᵀ Xp[r]   (Xp[r] = X[gather[r]/k]: gathered while loading with PermuteX
        //    or on the sm_90a path, whose TN producer gathers rows through its row table; else copied first)
        DeviceRange xpSource = x;
        RowSource xpRows = RowSource.GatherToken;
        if (CopiesXp)
        {
            // NOTE: the forward gathered X inside GEMM1 and kept no copy; the sm_80 dW GEMM gains more from a
            // contiguous Xp than the copy costs (docs/PERF.md), so make it here.
            xpSource = fw.Range(BlockBuffer.XPermuted);
            _kernels.GatherRows(s, dt, x, gather, xpSource, tk, k, h);
            xpRows = RowSource.Identity;
        }
        RunGemm(s, shapeClass, FusedGemmCall.TN(FusedGemm.FirstBackwardWeight, dG1, xpSource, dGateUp, expertRows, 2 * i, h, RowSource.Identity, xpRows));
        Probe(s, "bwd_gemm1_dw");
        // 7. router: dL = P ⊙ (dP − Σ_e P_e dP_e) from dw
        _kernels.RouterBackward(s, dt, probs, sel, dWeights, dLogits, tokens, e, k, c.NormTopKProb);
        Probe(s, "bwd_router");
        // 8. router dW: dWr = dLᵀ·X; from a shape class of 1024 tokens on, split over row chunks (one GEMM group each,
        //    an f32 partial [E,H] per group) and the partials summed in group order, rounded once (RouterRowSplit; the
        //    expert-parallel block runs the same plan)
        DeviceRange partials = bw.Layout.Contains(BlockBuffer.RouterWeightPartials) ? bw.Range(BlockBuffer.RouterWeightPartials) : DeviceRange.Null; // [G,E,H] f32
        FusedGemmCall routerDw = _routerSplit!.WeightGradCall(tokens, dt, Options, dLogits, x, partials, dRouter, routerRows, e, h);
        RunGemm(s, shapeClass, routerDw);
        RouterRowSplit.ReduceAfter(_kernels, s, dt, in routerDw, dRouter, e, h);
        Probe(s, "bwd_router_dw");
        // 9. router dX: dXr = dL·Wr
        RunGemm(s, shapeClass, FusedGemmCall.NN(FusedGemm.RouterBackwardData, dLogits, wr, dXRouter, routerRows, e, h, RowSource.Identity, RowTarget.Identity));
        Probe(s, "bwd_router_dx");
        // 10. dX[t] = dXr[t] + Σ_j dXp[t*k+j]
        _kernels.SumOverTopK(s, dt, dXpSlots, dXRouter, dX, tokens, k, h);
        Probe(s, "bwd_sum_over_topk");
    }

    /// <summary>Whether the backward copies Xp for GEMM1's dW: without PermuteX, where the dW GEMM does not gather.</summary>
    private bool CopiesXp => !Options.PermuteX && !_gemm.WeightGradientGathersRows;

    /// <summary>Launches <paramref name="call"/> with the tuner's config for the shape class (timing it first on the
    /// class's first call when autotune is on).</summary>
    private void RunGemm(CudaStream s, int shapeClass, in FusedGemmCall call) =>
        call.Launch(_gemm, s, DType, _tuner.Choose(_gemm, s, DType, shapeClass, in call));

    // ==== workspace =================================================================================================

    private BlockWorkspace EnsureForwardWorkspace(int tokens)
    {
        if (_forwardWorkspace is { } ws && ws.Layout.CapacityTokens >= tokens) return ws;
        int capacity = BlockWorkspaceLayout.ShapeClassTokens(tokens);
        var layout = BlockWorkspaceLayout.Forward(Config, DType, Options, capacity, copiesXp: CopiesXp);
        // NOTE: the old arena may still be read by queued work on some stream; the driver's cuMemFree waits for
        // the device to finish using it, so disposing here is safe (and not inside a graph capture: see Reserve).
        _forwardWorkspace?.Dispose();
        _forwardWorkspace = null;
        _forwardWorkspace = new BlockWorkspace(Context, layout);
        _saved = default;
        if (_decode.Supported && Options.Decode != DecodeMode.Off) _decode.Reserve();

        _iota?.Dispose();
        _iota = null;
        var iota = new int[capacity + 1];
        for (int t = 0; t <= capacity; t++) iota[t] = t;
        _iota = new DeviceBuffer<int>(Context, iota.Length);
        _iota.CopyFromHost(iota);
        _routerSplit?.Dispose();
        _routerSplit = null;
        _routerSplit = new RouterRowSplit(Context, capacity);
        if (Options.FuseMulPost)
        {
            _ones?.Dispose();
            _ones = null;
            var ones = new float[(long)capacity * Config.TopK];
            Array.Fill(ones, 1f);
            _ones = DeviceTransfer.UploadNew(Context, ones, DType);
        }
        return _forwardWorkspace;
    }

    /// <summary>Backward steps 1-4 through dU (FuseSwiGluBackward, or fp16): dU = w·dY and dw by the combine backward,
    /// then GEMM2's dX (with FuseSwiGluBackward on an sm_90a tile its dSwiGLU epilogue, else the plain GEMM and the
    /// SwiGLU backward) and dW from dU.</summary>
    private void BackwardThroughCombine(CudaStream s, DeviceRange dY /*[T,H]*/, DeviceRange dDown /*[E,H,I]*/, DeviceRange dWeights /*[T,k] f32*/,
        DeviceRange dAct /*[TK,I]*/, DeviceRange dG1 /*[TK,2I]*/, GroupedRows expertRows, int shapeClass)
    {
        ScalarType dt = DType;
        int tokens = _saved.Tokens, h = Config.HiddenSize, i = Config.IntermediateSize, k = Config.TopK, tk = tokens * k;
        BlockWorkspace fw = _forwardWorkspace!;
        BlockWorkspace bw = _backwardWorkspace!;
        DeviceRange w = _saved.Weights, inverse = fw.Range(BlockBuffer.Inverse), wd = _weights.DownProjRange;
        DeviceRange g1 = fw.Range(BlockBuffer.FirstGemm);             // [TK,2I]
        DeviceRange act = fw.Range(BlockBuffer.Intermediate);         // [TK,I]
        DeviceRange u = fw.Range(BlockBuffer.SecondGemm);             // [TK,H] layout of the forward's GEMM2 output
        DeviceRange dU = bw.Range(BlockBuffer.DSecondGemm);           // [TK,H] same layout as u
        // 1. dU[row(p)] = w[p]·dY[t], dw[p] = <dY[t], U[row(p)]>
        DeviceRange rowOfSlot = Options.PermuteY ? DeviceRange.Null : inverse;
        _kernels.CombineBackward(s, dt, dY, u, rowOfSlot, w, dU, dWeights, tokens, k, h);
        Probe(s, "bwd_combine");
        // 2. GEMM2 dX: dA[r] = dG2[r]·Wd[e]   (dG2[r] = dU[gather[r]] with PermuteY); with FuseSwiGluBackward on an
        //    sm_90a tile its dSwiGLU epilogue makes dG1 (step 4) from dA and G1 directly (no dA round trip)
        RowSource dG2Rows = Options.PermuteY ? RowSource.Gather : RowSource.Identity;
        var gemm2Dx = FusedGemmCall.NN(FusedGemm.SecondBackwardData, dU, wd, dAct, expertRows, h, i, dG2Rows, RowTarget.Identity);
        GemmConfig? gemm2DxConfig = _tuner.Choose(_gemm, s, dt, shapeClass, in gemm2Dx);
        GemmConfig? hopper2 = Options.FuseSwiGluBackward && GroupedGemm.FusedEpiloguesFit(i) ? gemm2Dx.Sm90aConfig(_gemm, dt, gemm2DxConfig) : null;
        if (hopper2 is not null)
        {
            _gemm.BackwardDataNNDSwiGlu(s, dt, hopper2, dU, wd, g1, dG1, expertRows, h, i, dG2Rows);
            Probe(s, "bwd_gemm2_dx_dswiglu");
        }
        else
        {
            gemm2Dx.Launch(_gemm, s, dt, gemm2DxConfig);
            Probe(s, "bwd_gemm2_dx");
        }
        // 3. GEMM2 dW: dWd[e] = Σ_{r∈e} dG2[r]ᵀ A[r]
        RunGemm(s, shapeClass, FusedGemmCall.TN(FusedGemm.SecondBackwardWeight, dU, act, dDown, expertRows, h, i, dG2Rows, RowSource.Identity));
        Probe(s, "bwd_gemm2_dw");
        // 4. dG1 = [dg, du] from G1 and dA (done by step 2's epilogue on an sm_90a tile)
        if (hopper2 is null)
        {
            _kernels.SiluMulBackward(s, dt, g1, dAct, dG1, tk, i);
            Probe(s, "bwd_silu_mul");
        }
    }

    /// <summary>Whether the backward applies the routing weights in the SwiGLU backward
    /// (<see cref="MoeKernels.SiluMulBackwardRouted"/>: no combine backward, no dU; the default for bf16 and fp32), or
    /// goes through dU = w·dY: with FuseSwiGluBackward (whose GEMM2 dX epilogue makes dG1 from dA directly), and for
    /// fp16, whose reference rounds dU = rnd(w·dY) before GEMM2 dX; the routed form's other rounding shows in a few
    /// dWgu elements at 3 fp16 ulps, past the suite's 2 (docs/DESIGN.md, docs/PERF.md v46).</summary>
    private bool RoutedSwiGluBackward => !Options.FuseSwiGluBackward && DType != ScalarType.Float16;

    private BlockWorkspace EnsureBackwardWorkspace(int tokens)
    {
        if (_backwardWorkspace is { } ws && ws.Layout.CapacityTokens >= tokens) return ws;
        int capacity = BlockWorkspaceLayout.ShapeClassTokens(tokens);
        var layout = BlockWorkspaceLayout.Backward(Config, DType, Options, capacity, gemmScattersDX: true, routerSplit: true,
            routedSwiGlu: RoutedSwiGluBackward);
        _backwardWorkspace?.Dispose();
        _backwardWorkspace = null;
        _backwardWorkspace = new BlockWorkspace(Context, layout);
        return _backwardWorkspace;
    }
}
