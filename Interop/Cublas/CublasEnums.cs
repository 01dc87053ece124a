namespace MoeNative.Interop;

// cuBLAS enums with the values of cublas_api.h / library_types.h (CUDA 12/13).

/// <summary><c>cublasStatus_t</c>.</summary>
public enum CublasStatus
{
    Success = 0,
    NotInitialized = 1,
    AllocFailed = 3,
    InvalidValue = 7,
    ArchMismatch = 8,
    MappingError = 11,
    ExecutionFailed = 13,
    InternalError = 14,
    NotSupported = 15,
    LicenseError = 16,
}

/// <summary><c>cublasOperation_t</c>: op(X) = X, Xᵀ or Xᴴ.</summary>
public enum CublasOperation
{
    /// <summary>CUBLAS_OP_N.</summary>
    None = 0,
    /// <summary>CUBLAS_OP_T.</summary>
    Transpose = 1,
    /// <summary>CUBLAS_OP_C.</summary>
    ConjugateTranspose = 2,
}

/// <summary><c>cudaDataType_t</c> (library_types.h), the real types.</summary>
public enum CudaDataType
{
    /// <summary>CUDA_R_32F.</summary>
    Float32 = 0,
    /// <summary>CUDA_R_64F.</summary>
    Float64 = 1,
    /// <summary>CUDA_R_16F.</summary>
    Float16 = 2,
    /// <summary>CUDA_R_8I.</summary>
    Int8 = 3,
    /// <summary>CUDA_R_32I.</summary>
    Int32 = 10,
    /// <summary>CUDA_R_16BF.</summary>
    BFloat16 = 14,
}

/// <summary><c>cublasComputeType_t</c>.</summary>
public enum CublasComputeType
{
    Compute16F = 64,
    Compute16FPedantic = 65,
    Compute32F = 68,
    Compute32FPedantic = 69,
    Compute64F = 70,
    Compute64FPedantic = 71,
    Compute32I = 72,
    Compute32IPedantic = 73,
    Compute32FFast16F = 74,
    Compute32FFast16BF = 75,
    Compute32FFastTF32 = 77,
}

/// <summary><c>cublasGemmAlgo_t</c> (heuristic choice; the numbered algorithms are ignored on sm_80+).</summary>
public enum CublasGemmAlgo
{
    /// <summary>CUBLAS_GEMM_DEFAULT.</summary>
    Default = -1,
    /// <summary>CUBLAS_GEMM_DEFAULT_TENSOR_OP (deprecated alias of the default on CUDA 11+).</summary>
    DefaultTensorOp = 99,
}

/// <summary><c>cublasMath_t</c>; <see cref="DisallowReducedPrecisionReduction"/> may be OR-ed with one of the others.</summary>
[Flags]
#pragma warning disable CA1069 // several members are distinct flags of one C enum
public enum CublasMath
#pragma warning restore CA1069
{
    /// <summary>CUBLAS_DEFAULT_MATH.</summary>
    Default = 0,
    /// <summary>CUBLAS_TENSOR_OP_MATH (deprecated).</summary>
    TensorOp = 1,
    /// <summary>CUBLAS_PEDANTIC_MATH: no tensor-core down-conversion of fp32 inputs.</summary>
    Pedantic = 2,
    /// <summary>CUBLAS_TF32_TENSOR_OP_MATH: fp32 GEMMs may use TF32 tensor cores.</summary>
    TF32TensorOp = 3,
    /// <summary>CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION: reductions in the compute type only.</summary>
    DisallowReducedPrecisionReduction = 16,
}

/// <summary>Maps MoeNative storage types to cuBLAS data types.</summary>
public static class CudaDataTypes
{
    /// <summary>bf16 → CUDA_R_16BF, fp16 → CUDA_R_16F, fp32 → CUDA_R_32F.</summary>
    public static CudaDataType ToCudaDataType(this ScalarType type) => type switch
    {
        ScalarType.Float32 => CudaDataType.Float32,
        ScalarType.Float16 => CudaDataType.Float16,
        ScalarType.BFloat16 => CudaDataType.BFloat16,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Expected Float32, Float16 or BFloat16."),
    };
}
