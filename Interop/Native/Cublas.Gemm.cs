using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

internal static unsafe partial class Cublas
{
    /// <summary>C = alpha·op(A)·op(B) + beta·C, column-major; alpha/beta host scalars of the compute type's
    /// scale type (float for the 32F compute types).</summary>
    [LibraryImport(Lib, EntryPoint = "cublasGemmEx")]
    internal static partial CublasStatus cublasGemmEx(IntPtr handle, CublasOperation transa, CublasOperation transb,
        int m, int n, int k, void* alpha,
        ulong A, CudaDataType Atype, int lda,
        ulong B, CudaDataType Btype, int ldb, void* beta,
        ulong C, CudaDataType Ctype, int ldc,
        CublasComputeType computeType, CublasGemmAlgo algo);

    [LibraryImport(Lib, EntryPoint = "cublasGemmStridedBatchedEx")]
    internal static partial CublasStatus cublasGemmStridedBatchedEx(IntPtr handle, CublasOperation transa, CublasOperation transb,
        int m, int n, int k, void* alpha,
        ulong A, CudaDataType Atype, int lda, long strideA,
        ulong B, CudaDataType Btype, int ldb, long strideB, void* beta,
        ulong C, CudaDataType Ctype, int ldc, long strideC,
        int batchCount, CublasComputeType computeType, CublasGemmAlgo algo);

    /// <summary>
    /// cuBLAS 12.5+: <c>group_count</c> groups, group i has <c>group_size[i]</c> problems sharing transa/transb/m/n/k/
    /// alpha/lda/ldb/beta/ldc. The per-group arrays (trans, m, n, k, alpha, ld, beta, group_size) are host arrays;
    /// <c>Aarray</c>/<c>Barray</c>/<c>Carray</c> are device arrays of device pointers, one per problem
    /// (Σ group_size entries). No algo argument.
    /// </summary>
    [LibraryImport(Lib, EntryPoint = "cublasGemmGroupedBatchedEx")]
    internal static partial CublasStatus cublasGemmGroupedBatchedEx(IntPtr handle,
        CublasOperation* transa_array, CublasOperation* transb_array,
        int* m_array, int* n_array, int* k_array, void* alpha_array,
        ulong Aarray, CudaDataType Atype, int* lda_array,
        ulong Barray, CudaDataType Btype, int* ldb_array, void* beta_array,
        ulong Carray, CudaDataType Ctype, int* ldc_array,
        int group_count, int* group_size, CublasComputeType computeType);
}
