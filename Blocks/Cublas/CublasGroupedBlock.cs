using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Blocks;

/// <summary>
/// The grouped reference (<see cref="GroupedMoeReference"/>: permute, per-expert GEMMs, silu-and-mul, per-expert
/// GEMMs, unpermute, weighted sum; manual backward) with every GEMM on cuBLAS (<see cref="CublasGemm"/>, fp32
/// compute). A thin wrapper: the math is the reference's; only the GEMM backend and its lifetime are added here.
/// Host-orchestrated (element-wise steps on the host), so it is the sanity leg of the three-way tests and the
/// context row of the benchmark, not a fast path. Not thread-safe.
/// </summary>
public sealed class CublasGroupedBlock : IMoeHostBlock, IDisposable
{
    private readonly CublasGemm _gemm;
    private bool _disposed;

    /// <param name="context">The GPU the GEMMs run on.</param>
    /// <param name="weights">Layer weights (rounded to <paramref name="dtype"/> by the reference when needed).</param>
    /// <param name="dtype">Storage dtype mirrored by the reference.</param>
    public CublasGroupedBlock(CudaContext context, MoeWeights weights, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(weights);
        _gemm = new CublasGemm(context);
        try
        {
            Reference = new GroupedMoeReference(weights, dtype, _gemm);
        }
        catch
        {
            _gemm.Dispose();
            throw;
        }
    }

    /// <summary>The wrapped reference (its <see cref="MoeReference.Gemm"/> is the cuBLAS backend).</summary>
    public GroupedMoeReference Reference { get; }

    /// <summary>"reference-cublas" (the benchmark's row name).</summary>
    public string Name => "reference-cublas";

    public MoeConfig Config => Reference.Config;

    public ScalarType DType => Reference.DType;

    /// <summary>Forward of T = x.Length / H tokens; with <paramref name="routing"/> its selection and weights are used.
    /// Returns every intermediate.</summary>
    /// <exception cref="ArgumentException">x not [T,H]; routing not matching T, k or E.</exception>
    public MoeIntermediates Forward(float[] x /*[T,H]*/, MoeRouting? routing = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Reference.Forward(x, routing);
    }

    /// <summary>The five gradients of the last forward for <paramref name="dY"/>.</summary>
    /// <exception cref="InvalidOperationException">No forward yet.</exception>
    public MoeGradients Backward(float[] dY /*[T,H]*/)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Reference.Backward(dY);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _gemm.Dispose();
    }
}
