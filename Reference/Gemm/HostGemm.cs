using System.Numerics;
using System.Numerics.Tensors;
using MoeNative.Interop;

namespace MoeNative.Reference;

/// <summary>
/// CPU GEMM on System.Numerics.Tensors (SIMD dot products / axpy), multi-threaded with <see cref="Parallel.For(int, int, Action{int})"/>,
/// accumulating in the element type (fp32 for float, fp64 for double). Deterministic: each output element is
/// produced by one thread in a fixed order, whatever the thread count.
/// </summary>
public sealed class HostGemm : IGemmBackend, IGemm<double>
{
    /// <summary>A shared instance (stateless).</summary>
    public static HostGemm Instance { get; } = new();

    public string Name => "host";

    // Output tiles: TileN columns of one output row; tiles are ordered column-block-major so that consecutive
    // tiles reuse the same block of B while it is in cache.
    private const int TileN = 64;
    private const long ParallelThreshold = 1 << 15; // multiply-adds below which one thread is faster

    public void MatMulNT(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k, ScalarType roundTo) => NT(a, b, c, m, n, k, roundTo);
    public void MatMulNN(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k, ScalarType roundTo) => NN(a, b, c, m, n, k, roundTo);
    public void MatMulTN(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k, ScalarType roundTo) => TN(a, b, c, m, n, k, roundTo);
    public void MatMulNT(ReadOnlySpan<double> a, ReadOnlySpan<double> b, Span<double> c, int m, int n, int k, ScalarType roundTo) => NT(a, b, c, m, n, k, roundTo);
    public void MatMulNN(ReadOnlySpan<double> a, ReadOnlySpan<double> b, Span<double> c, int m, int n, int k, ScalarType roundTo) => NN(a, b, c, m, n, k, roundTo);
    public void MatMulTN(ReadOnlySpan<double> a, ReadOnlySpan<double> b, Span<double> c, int m, int n, int k, ScalarType roundTo) => TN(a, b, c, m, n, k, roundTo);

    // C[m,n] = Σ_k A[m,k]·B[n,k]: one SIMD dot product per element.
    private static unsafe void NT<T>(ReadOnlySpan<T> a /*[M,K]*/, ReadOnlySpan<T> b /*[N,K]*/, Span<T> c /*[M,N]*/, int m, int n, int k, ScalarType roundTo)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        GemmChecks.Check(a, b, c, m, n, k, "[M,K]", "[N,K]");
        if (m == 0 || n == 0) return;
        fixed (T* pa = a) fixed (T* pb = b) fixed (T* pc = c)
        {
            nint ia = (nint)pa, ib = (nint)pb, ic = (nint)pc;
            int nBlocks = (n + TileN - 1) / TileN;
            void Tile(int tile)
            {
                int nb = tile / m, row = tile % m;
                int n0 = nb * TileN, n1 = Math.Min(n, n0 + TileN);
                var arow = new ReadOnlySpan<T>((T*)ia + (long)row * k, k);
                T* crow = (T*)ic + (long)row * n;
                for (int col = n0; col < n1; col++)
                    crow[col] = Precision<T>.Round(TensorPrimitives.Dot(arow, new ReadOnlySpan<T>((T*)ib + (long)col * k, k)), roundTo);
            }
            Run(m * nBlocks, (long)m * n * k, Tile);
        }
    }

    // C[m,n] = Σ_k A[m,k]·B[k,n]: per output tile of NnRows rows × AxpyTileN columns, axpy over the rows of B
    // (each block of B is read once per row block, while the C tile stays in L1).
    private static unsafe void NN<T>(ReadOnlySpan<T> a /*[M,K]*/, ReadOnlySpan<T> b /*[K,N]*/, Span<T> c /*[M,N]*/, int m, int n, int k, ScalarType roundTo)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        GemmChecks.Check(a, b, c, m, n, k, "[M,K]", "[K,N]");
        if (m == 0 || n == 0) return;
        fixed (T* pa = a) fixed (T* pb = b) fixed (T* pc = c)
        {
            nint ia = (nint)pa, ib = (nint)pb, ic = (nint)pc;
            int nBlocks = (n + AxpyTileN - 1) / AxpyTileN, mBlocks = (m + NnRows - 1) / NnRows;
            void Tile(int tile)
            {
                int nb = tile / mBlocks, mb = tile % mBlocks;
                int n0 = nb * AxpyTileN, width = Math.Min(n, n0 + AxpyTileN) - n0;
                int r0 = mb * NnRows, r1 = Math.Min(m, r0 + NnRows);
                for (int row = r0; row < r1; row++) new Span<T>((T*)ic + (long)row * n + n0, width).Clear();
                for (int kk = 0; kk < k; kk++)
                {
                    var brow = new ReadOnlySpan<T>((T*)ib + (long)kk * n + n0, width);
                    for (int row = r0; row < r1; row++)
                    {
                        var crow = new Span<T>((T*)ic + (long)row * n + n0, width);
                        TensorPrimitives.MultiplyAdd(brow, ((T*)ia)[(long)row * k + kk], crow, crow);
                    }
                }
                for (int row = r0; row < r1; row++) Precision<T>.RoundInPlace(new Span<T>((T*)ic + (long)row * n + n0, width), roundTo);
            }
            Run(mBlocks * nBlocks, (long)m * n * k, Tile);
        }
    }

    private const int NnRows = 16;

    // C[m,n] = Σ_k A[k,m]·B[k,n]: per output tile, axpy over the rows of B with the column of A as scalars.
    private static unsafe void TN<T>(ReadOnlySpan<T> a /*[K,M]*/, ReadOnlySpan<T> b /*[K,N]*/, Span<T> c /*[M,N]*/, int m, int n, int k, ScalarType roundTo)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        GemmChecks.Check(a, b, c, m, n, k, "[K,M]", "[K,N]");
        if (m == 0 || n == 0) return;
        fixed (T* pa = a) fixed (T* pb = b) fixed (T* pc = c)
        {
            nint ia = (nint)pa, ib = (nint)pb, ic = (nint)pc;
            int nBlocks = (n + AxpyTileN - 1) / AxpyTileN;
            void Tile(int tile)
            {
                int nb = tile / m, row = tile % m;
                int n0 = nb * AxpyTileN, width = Math.Min(n, n0 + AxpyTileN) - n0;
                var crow = new Span<T>((T*)ic + (long)row * n + n0, width);
                crow.Clear();
                for (int kk = 0; kk < k; kk++)
                {
                    T s = ((T*)ia)[(long)kk * m + row];
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<T>((T*)ib + (long)kk * n + n0, width), s, crow, crow);
                }
                Precision<T>.RoundInPlace(crow, roundTo);
            }
            Run(m * nBlocks, (long)m * n * k, Tile);
        }
    }

    private const int AxpyTileN = 256;

    private static void Run(int tiles, long work, Action<int> tile)
    {
        if (work < ParallelThreshold || tiles == 1)
        {
            for (int i = 0; i < tiles; i++) tile(i);
            return;
        }
        // Chunks of consecutive tiles per task keep scheduling overhead low and B reuse high.
        int chunks = Math.Min(tiles, Environment.ProcessorCount * 8);
        Parallel.For(0, chunks, ch =>
        {
            int t0 = (int)((long)tiles * ch / chunks), t1 = (int)((long)tiles * (ch + 1) / chunks);
            for (int i = t0; i < t1; i++) tile(i);
        });
    }
}
