using MoeNative.Interop;

namespace MoeNative.Reference;

/// <summary>
/// The reference's GEMMs on the GPU through <c>cublasGemmEx</c>: fp32 operands and output, CUBLAS_COMPUTE_32F (no
/// TF32: the handle keeps the default math mode), then the output rounded to <c>roundTo</c> on the host, exactly as
/// <see cref="HostGemm"/> does. Each call uploads its operands, runs on this object's stream, waits and downloads
/// (synchronous; the reference chooses clarity over speed). Device buffers grow as needed and are reused.
/// Row-major C[M,N] is column-major Cᵀ [N,M], so every call computes Cᵀ = op(B)·op(A) in cuBLAS terms.
/// Thread-safe (calls are serialised).
/// </summary>
public sealed class CublasGemm : IGemmBackend, IDisposable
{
    private readonly CudaStream _stream;
    private readonly CublasHandle _cublas;
    private readonly Lock _gate = new();
    private DeviceBuffer<float>? _a, _b, _c;
    private bool _disposed;

    public string Name => "cublas";
    public CudaContext Context { get; }

    /// <exception cref="CudaException">Stream creation failed.</exception>
    /// <exception cref="CublasException">cuBLAS could not be initialised.</exception>
    public CublasGemm(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        Context = context;
        _stream = new CudaStream(context);
        _cublas = new CublasHandle(context);
        _cublas.SetStream(_stream);
    }

    // C[m,n] = Σ_k A[m,k]·B[n,k]  ⇔  column-major Cᵀ(N×M) = op_T(B as K×N)·(A as K×M).
    public void MatMulNT(ReadOnlySpan<float> a /*[M,K]*/, ReadOnlySpan<float> b /*[N,K]*/, Span<float> c /*[M,N]*/, int m, int n, int k, ScalarType roundTo)
    {
        GemmChecks.Check(a, b, c, m, n, k, "[M,K]", "[N,K]");
        Run(a, b, c, m, n, k, roundTo, CublasOperation.Transpose, CublasOperation.None, lda: k, ldb: k);
    }

    // C = A·B  ⇔  Cᵀ(N×M) = (B as N×K)·(A as K×M).
    public void MatMulNN(ReadOnlySpan<float> a /*[M,K]*/, ReadOnlySpan<float> b /*[K,N]*/, Span<float> c /*[M,N]*/, int m, int n, int k, ScalarType roundTo)
    {
        GemmChecks.Check(a, b, c, m, n, k, "[M,K]", "[K,N]");
        Run(a, b, c, m, n, k, roundTo, CublasOperation.None, CublasOperation.None, lda: n, ldb: k);
    }

    // C = Aᵀ·B  ⇔  Cᵀ(N×M) = (B as N×K)·op_T(A as M×K).
    public void MatMulTN(ReadOnlySpan<float> a /*[K,M]*/, ReadOnlySpan<float> b /*[K,N]*/, Span<float> c /*[M,N]*/, int m, int n, int k, ScalarType roundTo)
    {
        GemmChecks.Check(a, b, c, m, n, k, "[K,M]", "[K,N]");
        Run(a, b, c, m, n, k, roundTo, CublasOperation.None, CublasOperation.Transpose, lda: n, ldb: m);
    }

    private void Run(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k, ScalarType roundTo,
        CublasOperation opB, CublasOperation opA, int lda, int ldb)
    {
        if (m == 0 || n == 0) return;
        Span<float> cOut = c[..(m * n)];
        if (k == 0) { cOut.Clear(); return; }
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            long aLen = (long)m * k, bLen = (long)n * k, cLen = (long)m * n;
            DeviceBuffer<float> da = Ensure(ref _a, aLen), db = Ensure(ref _b, bLen), dc = Ensure(ref _c, cLen);
            da.CopyFromHost(a[..(int)aLen]);
            db.CopyFromHost(b[..(int)bLen]);
            // cuBLAS "A" operand = our B, cuBLAS "B" operand = our A.
            _cublas.GemmEx(opB, opA, n, m, k,
                1.0, db.DevicePointer, CudaDataType.Float32, lda,
                da.DevicePointer, CudaDataType.Float32, ldb,
                0.0, dc.DevicePointer, CudaDataType.Float32, n,
                CublasComputeType.Compute32F);
            _stream.Synchronize();
            dc.CopyToHost(cOut);
        }
        Precision<float>.RoundInPlace(cOut, roundTo);
    }

    private DeviceBuffer<float> Ensure(ref DeviceBuffer<float>? buffer, long length)
    {
        if (buffer is null || buffer.Length < length)
        {
            buffer?.Dispose();
            buffer = null;
            buffer = new DeviceBuffer<float>(Context, Math.Max(length, 1));
        }
        return buffer;
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _a?.Dispose();
            _b?.Dispose();
            _c?.Dispose();
            _cublas.Dispose();
            _stream.Dispose();
        }
    }
}
