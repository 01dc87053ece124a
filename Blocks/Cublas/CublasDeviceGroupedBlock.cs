using System.Runtime.InteropServices;
using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Blocks;

/// <summary>
/// A device-resident grouped MoE block with its GEMMs on cuBLAS (<c>cublasGemmGroupedBatchedEx</c>, one group per
/// expert that received tokens, fp32 accumulation) and the element-wise steps on the project's small kernels:
/// the conventional "grouped GEMM library" baseline the fused block is measured against. Unlike the fused block it
/// reads <c>m_sizes</c> back to the host once per forward (cuBLAS takes host shapes), so it synchronises and cannot
/// be captured in a graph. Same math and layouts as <see cref="Qwen3MoeFusedBlock"/> without the permute options.
/// Used by the benchmark; also a second device implementation for tests. Not thread-safe.
/// </summary>
public sealed class CublasDeviceGroupedBlock : IMoeDeviceBlock
{
    private readonly Qwen3MoeDeviceWeights _weights;
    private readonly bool _ownsWeights;
    private readonly CublasHandle _cublas;
    private readonly MoeKernels _kernels;
    private BlockWorkspace? _forward;
    private BlockWorkspace? _backward;
    private DeviceBuffer<ulong>? _pointers;   // [6 GEMMs][3 operands][E] device pointers for the grouped calls
    private readonly int[] _counts;          // [E] host copy of m_sizes of the last forward (allocated once)
    private int _tokens = -1;
    private DeviceRange _x, _selected, _routingWeights;   // saved by the forward for the backward
    private bool _disposed;

    /// <summary>A block over already uploaded weights (not owned).</summary>
    public CublasDeviceGroupedBlock(Qwen3MoeDeviceWeights weights) : this(weights, ownsWeights: false)
    {
    }

    /// <summary>Uploads <paramref name="weights"/> in <paramref name="dtype"/> (owned).</summary>
    public CublasDeviceGroupedBlock(CudaContext context, MoeWeights weights, ScalarType dtype)
        : this(Qwen3MoeDeviceWeights.Upload(context, weights, dtype), ownsWeights: true)
    {
    }

    private CublasDeviceGroupedBlock(Qwen3MoeDeviceWeights weights, bool ownsWeights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        _weights = weights;
        _counts = new int[weights.Config.NumExperts];
        _ownsWeights = ownsWeights;
        _cublas = new CublasHandle(weights.Context);
        _kernels = MoeKernels.For(weights.Context);
    }

    public CudaContext Context => _weights.Context;

    /// <summary>Experts that received at least one token in the last forward (from the host copy of m_sizes).</summary>
    public int ExpertsHitLastForward => _counts.Count(n => n > 0);

    /// <summary>"cublas-grouped" (the benchmark's row name).</summary>
    public string Name => "cublas-grouped";

    /// <summary>False: the forward copies m_sizes to the host (cuBLAS needs the group sizes there).</summary>
    public bool IsGraphCapturable => false;

    /// <summary>Nothing to reserve ahead: the workspaces grow on the first call of a size (validates T only).</summary>
    public void Reserve(int tokens, bool backward = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tokens);
        MoeLimits.CheckDeviceTokens(Config, tokens, nameof(tokens));
    }

    /// <summary>Experts with rows in the last forward (from the m_sizes the forward copied to the host).</summary>
    public int CountExpertsHit() => ExpertsHitLastForward;
    public MoeConfig Config => _weights.Config;
    public ScalarType DType => _weights.DType;

    private CudaDataType CublasType => DType switch
    {
        ScalarType.BFloat16 => CudaDataType.BFloat16,
        ScalarType.Float16 => CudaDataType.Float16,
        _ => CudaDataType.Float32,
    };

    /// <summary>Y [T,H] = MoE(X [T,H]) on <paramref name="stream"/>; synchronises once (m_sizes to the host).</summary>
    public void Forward<TElem>(CudaStream stream, DeviceBuffer<TElem> x /*[T,H]*/, DeviceBuffer<TElem> y /*[T,H]*/, int tokens,
        DeviceRouting<TElem>? routing = null) where TElem : unmanaged
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        BlockChecks.ElementType(DType, typeof(TElem), nameof(x));
        BlockChecks.ForwardShapes(Config, DType, tokens, x.Length, y.Length, routing?.Selected.Length, routing?.Weights.Length);
        BlockChecks.ForwardContexts(Context, stream, x, y, routing);
        _tokens = tokens;
        _x = x.AsRange();
        if (tokens == 0)
        {
            Array.Clear(_counts); // no expert was hit
            return;
        }
        MoeConfig c = Config;
        ScalarType dt = DType;
        int h = c.HiddenSize, i = c.IntermediateSize, e = c.NumExperts, k = c.TopK, tk = tokens * k;
        BlockWorkspace ws = EnsureForward(tokens);
        DeviceRange logits = ws.Range(BlockBuffer.Logits), probs = ws.Range(BlockBuffer.Probs);
        DeviceRange sel = ws.Range(BlockBuffer.Selected), w = ws.Range(BlockBuffer.RoutingWeights);
        DeviceRange mSizes = ws.Range(BlockBuffer.MSizes), gather = ws.Range(BlockBuffer.Gather), inverse = ws.Range(BlockBuffer.Inverse);
        DeviceRange xp = ws.Range(BlockBuffer.XPermuted), g1 = ws.Range(BlockBuffer.FirstGemm);
        DeviceRange act = ws.Range(BlockBuffer.Intermediate), g2 = ws.Range(BlockBuffer.SecondGemm);
        _cublas.SetStream(stream);

        // router logits [T,E] = X [T,H] · Wr [E,H]ᵀ (dense NT)
        DenseNT(x.DevicePointer, _weights.Gate, logits.Pointer, tokens, e, h);
        _kernels.RouterForward(stream, dt, logits, probs, sel, w, tokens, e, k, c.NormTopKProb);
        if (routing is not null)
        {
            sel = routing.Selected.AsRange();
            w = routing.Weights.AsRange();
        }
        _selected = sel;
        _routingWeights = w;
        _kernels.RoutingIndices(stream, sel, mSizes, gather, inverse, ws.Range(BlockBuffer.RoutingCounts), tk, e);
        _kernels.GatherRows(stream, dt, x.AsRange(), gather, xp, tk, k, h);
        // NOTE: cuBLAS needs the group shapes on the host: the one synchronisation of this block.
        stream.Synchronize();
        ws.Arena.CopyToHost(MemoryMarshal.AsBytes(_counts.AsSpan()), ws.Offset(BlockBuffer.MSizes));
        UploadPointers(tokens);
        GroupedNT(0, 2 * i, h);                   // G1 [TK,2I] = Xp · Wgu[e]ᵀ
        _kernels.SiluMulForward(stream, dt, g1, act, tk, i);
        GroupedNT(1, h, i);                       // G2 [TK,H] = A · Wd[e]ᵀ
        _kernels.CombineForward(stream, dt, g2, inverse, w, y.AsRange(), tokens, k, h);
    }

    /// <summary>The five gradients of the last forward (stacked gate/up as in the weights); no synchronisation.</summary>
    public void Backward<TElem>(CudaStream stream, DeviceBuffer<TElem> dY /*[T,H]*/, DeviceGradients<TElem> gradients)
        where TElem : unmanaged
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(dY);
        ArgumentNullException.ThrowIfNull(gradients);
        BlockChecks.ElementType(DType, typeof(TElem), nameof(dY));
        if (_tokens < 0) throw new InvalidOperationException("Backward needs a preceding Forward.");
        int tokens = _tokens;
        MoeConfig c = Config;
        BlockChecks.BackwardShapes(c, tokens, dY.Length, gradients.HiddenStates.Length, gradients.Gate.Length, gradients.GateUpProj.Length, gradients.DownProj.Length);
        BlockChecks.BackwardContexts(Context, stream, dY, gradients);
        if (tokens == 0 || _counts.Any(n => n == 0))
        {
            // Experts without rows are not visited by the grouped calls: their gradient slices must be zero.
            // (Skipped when every expert has rows, so large-T timings do not pay a needless memset.)
            gradients.GateUpProj.FillBytes(0, stream);
            gradients.DownProj.FillBytes(0, stream);
        }
        if (tokens == 0)
        {
            gradients.Gate.FillBytes(0, stream);
            return;
        }
        ScalarType dt = DType;
        int h = c.HiddenSize, i = c.IntermediateSize, e = c.NumExperts, k = c.TopK, tk = tokens * k;
        BlockWorkspace fw = _forward!;
        BlockWorkspace bw = EnsureBackward(tokens);
        DeviceRange probs = fw.Range(BlockBuffer.Probs), sel = _selected, w = _routingWeights;
        DeviceRange inverse = fw.Range(BlockBuffer.Inverse), g1 = fw.Range(BlockBuffer.FirstGemm), g2 = fw.Range(BlockBuffer.SecondGemm);
        DeviceRange dG2 = bw.Range(BlockBuffer.DSecondGemm), dw = bw.Range(BlockBuffer.DRoutingWeights);
        DeviceRange dAct = bw.Range(BlockBuffer.DIntermediate), dG1 = bw.Range(BlockBuffer.DFirstGemm);
        DeviceRange dXpExpert = bw.Range(BlockBuffer.DXPermutedExpertOrder), dXpSlots = bw.Range(BlockBuffer.DXPermutedSlotOrder);
        DeviceRange dLogits = bw.Range(BlockBuffer.DLogits), dXRouter = bw.Range(BlockBuffer.DXRouter);
        _cublas.SetStream(stream);
        SetBackwardPointers(gradients.GateUpProj.DevicePointer, gradients.DownProj.DevicePointer, tokens);

        _kernels.CombineBackward(stream, dt, dY.AsRange(), g2, inverse, w, dG2, dw, tokens, k, h);
        GroupedNN(2, h, i);                       // dA [TK,I] = dG2 · Wd[e]
        GroupedTN(3, h, i);                       // dWd [E,H,I] = Σ dG2ᵀ A
        _kernels.SiluMulBackward(stream, dt, g1, dAct, dG1, tk, i);
        GroupedNN(4, 2 * i, h);                   // dXp [TK,H] = dG1 · Wgu[e]
        GroupedTN(5, 2 * i, h);                   // dWgu [E,2I,H] = Σ dG1ᵀ Xp
        _kernels.GatherRows(stream, dt, dXpExpert, inverse, dXpSlots, tk, 1, h);
        _kernels.RouterBackward(stream, dt, probs, sel, dw, dLogits, tokens, e, k, c.NormTopKProb);
        // router dW [E,H] = dLᵀ [E,T] · X [T,H]; router dX [T,H] = dL [T,E] · Wr [E,H]
        DenseTN(dLogits.Pointer, _x.Pointer, gradients.Gate.DevicePointer, tokens, e, h);
        DenseNN(dLogits.Pointer, _weights.Gate, dXRouter.Pointer, tokens, e, h);
        _kernels.SumOverTopK(stream, dt, dXpSlots, dXRouter, gradients.HiddenStates.AsRange(), tokens, k, h);
    }

    // ---- cuBLAS calls (row-major tensors seen column-major: C[M,N] row-major is Cᵀ [N,M] with ld N) -------------

    // C [M,N] = A [M,K] · B [N,K]ᵀ  ->  Cᵀ = B·Aᵀ: gemm(T, N, m=N, n=M, k=K, B (ld K), A (ld K), C (ld N))
    private void DenseNT(ulong a, ulong b, ulong cOut, int m, int n, int k) =>
        _cublas.GemmEx(CublasOperation.Transpose, CublasOperation.None, n, m, k, 1.0, b, CublasType, k, a, CublasType, k,
            0.0, cOut, CublasType, n, CublasComputeType.Compute32F);

    // C [M,K] = A [M,N] · W [N,K]  ->  Cᵀ = Wᵀ·Aᵀ: gemm(N, N, m=K, n=M, k=N, W (ld K), A (ld N), C (ld K))
    private void DenseNN(ulong a, ulong wPtr, ulong cOut, int m, int n, int k) =>
        _cublas.GemmEx(CublasOperation.None, CublasOperation.None, k, m, n, 1.0, wPtr, CublasType, k, a, CublasType, n,
            0.0, cOut, CublasType, k, CublasComputeType.Compute32F);

    // dW [N,K] = A [R,N]ᵀ · B [R,K]  ->  dWᵀ = Bᵀ·A: gemm(N, T, m=K, n=N, k=R, B (ld K), A (ld N), dW (ld K))
    private void DenseTN(ulong a, ulong b, ulong dW, int rows, int n, int k) =>
        _cublas.GemmEx(CublasOperation.None, CublasOperation.Transpose, k, n, rows, 1.0, b, CublasType, k, a, CublasType, n,
            0.0, dW, CublasType, k, CublasComputeType.Compute32F);

    private int[] Groups() => Enumerable.Range(0, Config.NumExperts).Where(x => _counts[x] > 0).ToArray();

    private void GroupedNT(int slot, int n, int k)
    {
        int[] experts = Groups();
        int g = experts.Length;
        _cublas.GemmGroupedBatchedEx(
            Fill(g, CublasOperation.Transpose), Fill(g, CublasOperation.None),
            Fill(g, n), experts.Select(x => _counts[x]).ToArray(), Fill(g, k), Fill(g, 1f),
            PointerArray(slot, 1), CublasType, Fill(g, k),
            PointerArray(slot, 0), CublasType, Fill(g, k), Fill(g, 0f),
            PointerArray(slot, 2), CublasType, Fill(g, n), Fill(g, 1), CublasComputeType.Compute32F);
    }

    private void GroupedNN(int slot, int n, int k)
    {
        int[] experts = Groups();
        int g = experts.Length;
        _cublas.GemmGroupedBatchedEx(
            Fill(g, CublasOperation.None), Fill(g, CublasOperation.None),
            Fill(g, k), experts.Select(x => _counts[x]).ToArray(), Fill(g, n), Fill(g, 1f),
            PointerArray(slot, 1), CublasType, Fill(g, k),
            PointerArray(slot, 0), CublasType, Fill(g, n), Fill(g, 0f),
            PointerArray(slot, 2), CublasType, Fill(g, k), Fill(g, 1), CublasComputeType.Compute32F);
    }

    private void GroupedTN(int slot, int n, int k)
    {
        int[] experts = Groups();
        int g = experts.Length;
        _cublas.GemmGroupedBatchedEx(
            Fill(g, CublasOperation.None), Fill(g, CublasOperation.Transpose),
            Fill(g, k), Fill(g, n), experts.Select(x => _counts[x]).ToArray(), Fill(g, 1f),
            PointerArray(slot, 1), CublasType, Fill(g, k),
            PointerArray(slot, 0), CublasType, Fill(g, n), Fill(g, 0f),
            PointerArray(slot, 2), CublasType, Fill(g, k), Fill(g, 1), CublasComputeType.Compute32F);
    }

    private static T[] Fill<T>(int count, T value)
    {
        var a = new T[count];
        Array.Fill(a, value);
        return a;
    }

    /// <summary>Device address of operand <paramref name="operand"/> (0 = A rows, 1 = B/W, 2 = C) of grouped call <paramref name="slot"/>.</summary>
    private ulong PointerArray(int slot, int operand) => _pointers!.PointerAt(((long)slot * 3 + operand) * Config.NumExperts);

    private readonly ulong[][] _hostPointers = new ulong[6 * 3][];

    private void UploadPointers(int tokens)
    {
        MoeConfig c = Config;
        int e = c.NumExperts, h = c.HiddenSize, i = c.IntermediateSize, s = DType.SizeOf();
        BlockWorkspace ws = _forward!;
        ulong xp = ws.Ptr(BlockBuffer.XPermuted), g1 = ws.Ptr(BlockBuffer.FirstGemm);
        ulong act = ws.Ptr(BlockBuffer.Intermediate), g2 = ws.Ptr(BlockBuffer.SecondGemm);
        _pointers ??= new DeviceBuffer<ulong>(Context, 6L * 3 * e);
        var host = new ulong[6 * 3 * e];
        int[] experts = Groups();
        int row = 0, next = 0;
        var rowOf = new int[e];
        for (int x = 0; x < e; x++) { rowOf[x] = row; row += _counts[x]; }
        foreach (int x in experts)
        {
            long r = rowOf[x];
            // slot 0: GEMM1 forward  A = Xp rows, B = Wgu[e], C = G1 rows
            Set(host, 0, next, xp + (ulong)(r * h * s), _weights.GateUpProj + (ulong)((long)x * 2 * i * h * s), g1 + (ulong)(r * 2 * i * s), e);
            // slot 1: GEMM2 forward  A = act rows, B = Wd[e], C = G2 rows
            Set(host, 1, next, act + (ulong)(r * i * s), _weights.DownProj + (ulong)((long)x * h * i * s), g2 + (ulong)(r * h * s), e);
            next++;
        }
        _ = tokens;
        _hostPointerTemplate = host;
        // NOTE: a synchronous copy on the legacy stream: ordered after all earlier work on blocking streams.
        _pointers.CopyFromHost(host);
    }

    private ulong[]? _hostPointerTemplate;   // forward slots of the last forward, completed by the backward

    private void SetBackwardPointers(ulong dGateUp, ulong dDown, int tokens)
    {
        MoeConfig c = Config;
        int e = c.NumExperts, h = c.HiddenSize, i = c.IntermediateSize, s = DType.SizeOf();
        BlockWorkspace fw = _forward!, bw = _backward!;
        ulong xp = fw.Ptr(BlockBuffer.XPermuted), act = fw.Ptr(BlockBuffer.Intermediate);
        ulong dG2 = bw.Ptr(BlockBuffer.DSecondGemm), dAct = bw.Ptr(BlockBuffer.DIntermediate);
        ulong dG1 = bw.Ptr(BlockBuffer.DFirstGemm), dXp = bw.Ptr(BlockBuffer.DXPermutedExpertOrder);
        ulong[] host = _hostPointerTemplate ?? new ulong[6 * 3 * e];
        int row = 0, next = 0;
        var rowOf = new int[e];
        for (int x = 0; x < e; x++) { rowOf[x] = row; row += _counts[x]; }
        foreach (int x in Groups())
        {
            long r = rowOf[x];
            ulong wgu = _weights.GateUpProj + (ulong)((long)x * 2 * i * h * s), wd = _weights.DownProj + (ulong)((long)x * h * i * s);
            // slot 2: GEMM2 dX  A = dG2 rows [m,H], B = Wd[e] [H,I], C = dA rows [m,I]
            Set(host, 2, next, dG2 + (ulong)(r * h * s), wd, dAct + (ulong)(r * i * s), e);
            // slot 3: GEMM2 dW  A = dG2 rows [m,H], B = act rows [m,I], C = dWd[e] [H,I]
            Set(host, 3, next, dG2 + (ulong)(r * h * s), act + (ulong)(r * i * s), dDown + (ulong)((long)x * h * i * s), e);
            // slot 4: GEMM1 dX  A = dG1 rows [m,2I], B = Wgu[e] [2I,H], C = dXp rows [m,H]
            Set(host, 4, next, dG1 + (ulong)(r * 2 * i * s), wgu, dXp + (ulong)(r * h * s), e);
            // slot 5: GEMM1 dW  A = dG1 rows [m,2I], B = Xp rows [m,H], C = dWgu[e] [2I,H]
            Set(host, 5, next, dG1 + (ulong)(r * 2 * i * s), xp + (ulong)(r * h * s), dGateUp + (ulong)((long)x * 2 * i * h * s), e);
            next++;
        }
        _ = tokens;
        _pointers!.CopyFromHost(host);
    }

    private static void Set(ulong[] host, int slot, int index, ulong a, ulong b, ulong c, int e)
    {
        host[(slot * 3 + 0) * e + index] = a;
        host[(slot * 3 + 1) * e + index] = b;
        host[(slot * 3 + 2) * e + index] = c;
    }

    private BlockWorkspace EnsureForward(int tokens)
    {
        if (_forward is { } ws && ws.Layout.CapacityTokens >= tokens) return ws;
        _forward?.Dispose();
        _forward = null;
        _forward = new BlockWorkspace(Context, BlockWorkspaceLayout.Forward(Config, DType, FusedBlockOptions.Default,
            BlockWorkspaceLayout.ShapeClassTokens(tokens)));
        return _forward;
    }

    private BlockWorkspace EnsureBackward(int tokens)
    {
        if (_backward is { } ws && ws.Layout.CapacityTokens >= tokens) return ws;
        _backward?.Dispose();
        _backward = null;
        _backward = new BlockWorkspace(Context, BlockWorkspaceLayout.Backward(Config, DType, FusedBlockOptions.Default,
            BlockWorkspaceLayout.ShapeClassTokens(tokens)));
        return _backward;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _forward?.Dispose();
        _backward?.Dispose();
        _pointers?.Dispose();
        _cublas.Dispose();
        if (_ownsWeights) _weights.Dispose();
    }
}
