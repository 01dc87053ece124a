using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>
/// A cuBLAS v2 handle bound to a context's device. All matrices are column-major as in cuBLAS; for row-major
/// data use the transposition identity (row-major C[M,N] = A[M,K]·B[N,K]ᵀ is column-major Cᵀ = B·Aᵀ:
/// <c>GemmEx(Transpose, None, m: N, n: M, k: K, B, ldb: K, A, lda: K, C, ldc: N)</c>).
/// Scalars alpha/beta are passed from the host as the compute type's scale type (double → half for the 16F
/// compute types, double for 64F, int for 32I, float otherwise). Failures → <see cref="CublasException"/>.
/// Not thread-safe: use one handle per thread or serialise.
/// </summary>
public sealed class CublasHandle : IDisposable
{
    private readonly SafeCublasHandle _handle;

    /// <exception cref="DllNotFoundException">cuBLAS not found; the message lists every name and path tried.</exception>
    /// <exception cref="CublasException">cublasCreate_v2 failed.</exception>
    public unsafe CublasHandle(CudaContext ctx)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        NativeLibraries.Require(NativeLibraryKind.Cublas);
        ctx.MakeCurrent();
        IntPtr h;
        CublasException.Check(Cublas.cublasCreate(&h), "cublasCreate_v2");
        _handle = new SafeCublasHandle(h, ctx.SafeHandle);
        Context = ctx;
    }

    public CudaContext Context { get; }

    /// <summary>cuBLAS version, major*10000 + minor*100 + patch (e.g. 130000 for 13.0.0).</summary>
    public unsafe int Version
    {
        get
        {
            IntPtr h = Begin();
            int v;
            CublasException.Check(Cublas.cublasGetVersion(h, &v), "cublasGetVersion_v2");
            GC.KeepAlive(this);
            return v;
        }
    }

    /// <summary>Later calls enqueue on <paramref name="stream"/> (cublasSetStream_v2).</summary>
    public void SetStream(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        IntPtr h = Begin();
        CublasException.Check(Cublas.cublasSetStream(h, stream.Handle), "cublasSetStream_v2");
        GC.KeepAlive(this);
        GC.KeepAlive(stream);
    }

    /// <summary>Gives cuBLAS a user workspace (cublasSetWorkspace_v2): needed for graph capture without internal
    /// allocation. The buffer must outlive every call using it.</summary>
    public void SetWorkspace(ulong devicePointer, long sizeInBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sizeInBytes);
        IntPtr h = Begin();
        CublasException.Check(Cublas.cublasSetWorkspace(h, devicePointer, (nuint)sizeInBytes), "cublasSetWorkspace_v2");
        GC.KeepAlive(this);
    }

    /// <summary><see cref="SetWorkspace(ulong, long)"/> with a whole byte buffer.</summary>
    public void SetWorkspace(DeviceBuffer<byte> workspace)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        SetWorkspace(workspace.DevicePointer, workspace.SizeInBytes);
    }

    /// <summary>cublasSetMathMode.</summary>
    public void SetMathMode(CublasMath mode)
    {
        IntPtr h = Begin();
        CublasException.Check(Cublas.cublasSetMathMode(h, mode), "cublasSetMathMode");
        GC.KeepAlive(this);
    }

    /// <summary>C[m,n] = alpha·op(A)·op(B) + beta·C (column-major, cublasGemmEx). Device pointers; enqueued on the
    /// handle's stream. Shapes (column-major, as stored): a // [lda, k] (N) or [lda, m] (T), op(A) [m,k];
    /// b // [ldb, n] (N) or [ldb, k] (T), op(B) [k,n]; c // [ldc, n], C [m,n].</summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative m/n/k or a leading dimension below 1.</exception>
    /// <exception cref="CublasException">cuBLAS rejected the call (unsupported type combination, bad ld, ...).</exception>
    public unsafe void GemmEx(CublasOperation transa, CublasOperation transb, int m, int n, int k,
        double alpha, ulong a, CudaDataType aType, int lda,
        ulong b, CudaDataType bType, int ldb,
        double beta, ulong c, CudaDataType cType, int ldc,
        CublasComputeType computeType, CublasGemmAlgo algo = CublasGemmAlgo.Default)
    {
        CheckShape(m, n, k, lda, ldb, ldc);
        IntPtr h = Begin();
        ulong alphaBits = 0, betaBits = 0;
        WriteScalar(computeType, alpha, &alphaBits);
        WriteScalar(computeType, beta, &betaBits);
        CublasException.Check(Cublas.cublasGemmEx(h, transa, transb, m, n, k, &alphaBits, a, aType, lda, b, bType, ldb,
            &betaBits, c, cType, ldc, computeType, algo), "cublasGemmEx", $"m={m} n={n} k={k} {aType}/{bType}/{cType} {computeType}");
        GC.KeepAlive(this);
    }

    /// <summary>batchCount independent GEMMs, matrix i at base + i·stride (elements), cublasGemmStridedBatchedEx;
    /// each one shaped as in <see cref="GemmEx"/>.</summary>
    public unsafe void GemmStridedBatchedEx(CublasOperation transa, CublasOperation transb, int m, int n, int k,
        double alpha, ulong a, CudaDataType aType, int lda, long strideA,
        ulong b, CudaDataType bType, int ldb, long strideB,
        double beta, ulong c, CudaDataType cType, int ldc, long strideC,
        int batchCount, CublasComputeType computeType, CublasGemmAlgo algo = CublasGemmAlgo.Default)
    {
        CheckShape(m, n, k, lda, ldb, ldc);
        ArgumentOutOfRangeException.ThrowIfNegative(batchCount);
        IntPtr h = Begin();
        ulong alphaBits = 0, betaBits = 0;
        WriteScalar(computeType, alpha, &alphaBits);
        WriteScalar(computeType, beta, &betaBits);
        CublasException.Check(Cublas.cublasGemmStridedBatchedEx(h, transa, transb, m, n, k, &alphaBits,
            a, aType, lda, strideA, b, bType, ldb, strideB, &betaBits, c, cType, ldc, strideC,
            batchCount, computeType, algo), "cublasGemmStridedBatchedEx", $"m={m} n={n} k={k} batch={batchCount}");
        GC.KeepAlive(this);
    }

    /// <summary>
    /// Grouped batched GEMM (cublasGemmGroupedBatchedEx, cuBLAS 12.5+): group g = transa[g], transb[g], m[g], n[g],
    /// k[g], alpha[g], lda[g], ldb[g], beta[g], ldc[g] applied to groupSize[g] problems. The per-group spans are host
    /// data, all of one length (the group count). <paramref name="aArray"/>, <paramref name="bArray"/>,
    /// <paramref name="cArray"/> are DEVICE arrays of Σ groupSize device pointers (ulong), problems in group order.
    /// Only the 32F compute types (float alpha/beta) are supported here.
    /// </summary>
    /// <exception cref="ArgumentException">Span lengths differ, a size is negative, or the compute type is not 32F.</exception>
    /// <exception cref="CublasException">cuBLAS rejected the call (also when the library predates 12.5).</exception>
    public unsafe void GemmGroupedBatchedEx(
        ReadOnlySpan<CublasOperation> transa, ReadOnlySpan<CublasOperation> transb,
        ReadOnlySpan<int> m, ReadOnlySpan<int> n, ReadOnlySpan<int> k, ReadOnlySpan<float> alpha,
        ulong aArray, CudaDataType aType, ReadOnlySpan<int> lda,
        ulong bArray, CudaDataType bType, ReadOnlySpan<int> ldb, ReadOnlySpan<float> beta,
        ulong cArray, CudaDataType cType, ReadOnlySpan<int> ldc,
        ReadOnlySpan<int> groupSize, CublasComputeType computeType)
    {
        int groups = transa.Length;
        if (transb.Length != groups || m.Length != groups || n.Length != groups || k.Length != groups
            || alpha.Length != groups || lda.Length != groups || ldb.Length != groups || beta.Length != groups
            || ldc.Length != groups || groupSize.Length != groups)
            throw new ArgumentException($"Every per-group span must have the group count ({groups}) as length.", nameof(transb));
        if (computeType is not (CublasComputeType.Compute32F or CublasComputeType.Compute32FPedantic
            or CublasComputeType.Compute32FFast16F or CublasComputeType.Compute32FFast16BF or CublasComputeType.Compute32FFastTF32))
            throw new ArgumentException($"Only 32F compute types take float alpha/beta; got {computeType}.", nameof(computeType));
        for (int g = 0; g < groups; g++)
        {
            CheckShape(m[g], n[g], k[g], lda[g], ldb[g], ldc[g]);
            ArgumentOutOfRangeException.ThrowIfNegative(groupSize[g], nameof(groupSize));
        }
        if (groups == 0)
            return;
        IntPtr h = Begin();
        fixed (CublasOperation* pTa = transa, pTb = transb)
        fixed (int* pM = m, pN = n, pK = k, pLda = lda, pLdb = ldb, pLdc = ldc, pSize = groupSize)
        fixed (float* pAlpha = alpha, pBeta = beta)
        {
            CublasException.Check(Cublas.cublasGemmGroupedBatchedEx(h, pTa, pTb, pM, pN, pK, pAlpha,
                aArray, aType, pLda, bArray, bType, pLdb, pBeta, cArray, cType, pLdc, groups, pSize, computeType),
                "cublasGemmGroupedBatchedEx", $"{groups} groups");
        }
        GC.KeepAlive(this);
    }

    public void Dispose() => _handle.Dispose();

    private IntPtr Begin()
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        Context.MakeCurrent();
        return _handle.DangerousGetHandle();
    }

    private static void CheckShape(int m, int n, int k, int lda, int ldb, int ldc)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        ArgumentOutOfRangeException.ThrowIfLessThan(lda, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(ldb, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(ldc, 1);
    }

    /// <summary>Writes <paramref name="value"/> in the scale type of <paramref name="computeType"/>.</summary>
    private static unsafe void WriteScalar(CublasComputeType computeType, double value, ulong* destination)
    {
        switch (computeType)
        {
            case CublasComputeType.Compute16F or CublasComputeType.Compute16FPedantic:
                *(Half*)destination = (Half)value;
                break;
            case CublasComputeType.Compute64F or CublasComputeType.Compute64FPedantic:
                *(double*)destination = value;
                break;
            case CublasComputeType.Compute32I or CublasComputeType.Compute32IPedantic:
                *(int*)destination = checked((int)value);
                break;
            default:
                *(float*)destination = (float)value;
                break;
        }
    }
}
