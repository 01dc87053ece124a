using System.Numerics;
using MoeNative.Interop;

namespace MoeNative.Reference;

/// <summary>
/// The three dense GEMM shapes the reference needs (row-major, fp32-or-better accumulation), each writing (not
/// accumulating into) C and then rounding C to <c>roundTo</c>. Legend: C [M,N]; the reduction dimension is K.
/// NT is the real layout (both operands K-contiguous, as in <c>nn.Linear</c>); NN and TN serve the backward.
/// </summary>
public interface IGemm<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    /// <summary>C[m,n] = Σ_k A[m,k]·B[n,k]. a // [M,K], b // [N,K], c // [M,N]</summary>
    void MatMulNT(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> c, int m, int n, int k, ScalarType roundTo);

    /// <summary>C[m,n] = Σ_k A[m,k]·B[k,n]. a // [M,K], b // [K,N], c // [M,N]</summary>
    void MatMulNN(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> c, int m, int n, int k, ScalarType roundTo);

    /// <summary>C[m,n] = Σ_k A[k,m]·B[k,n]. a // [K,M], b // [K,N], c // [M,N]</summary>
    void MatMulTN(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> c, int m, int n, int k, ScalarType roundTo);
}

/// <summary>A float GEMM backend for the reference: <see cref="HostGemm"/> (CPU) or <see cref="CublasGemm"/> (GPU).</summary>
public interface IGemmBackend : IGemm<float>
{
    /// <summary>"host" or "cublas", for reports.</summary>
    string Name { get; }
}

internal static class GemmChecks
{
    public static void Check<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> c, int m, int n, int k, string aShape, string bShape)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        if (a.Length < (long)m * k) throw new ArgumentException($"a must be {aShape} with M={m}, K={k}: {(long)m * k} elements, got {a.Length}.", nameof(a));
        if (b.Length < (long)n * k) throw new ArgumentException($"b must be {bShape} with N={n}, K={k}: {(long)n * k} elements, got {b.Length}.", nameof(b));
        if (c.Length < (long)m * n) throw new ArgumentException($"c must be [M={m},N={n}]: {(long)m * n} elements, got {c.Length}.", nameof(c));
    }
}
