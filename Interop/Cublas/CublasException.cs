namespace MoeNative.Interop;

/// <summary>A cuBLAS call returned a status other than CUBLAS_STATUS_SUCCESS.</summary>
public sealed class CublasException : Exception
{
    public CublasException(string apiName, CublasStatus status, string? detail = null)
        : base($"{apiName}{(detail is null ? "" : $" ({detail})")} failed: {NameOf(status)} ({(int)status}).")
    {
        ApiName = apiName;
        Status = status;
        StatusName = NameOf(status);
    }

    /// <summary>The C function that failed, e.g. "cublasGemmEx".</summary>
    public string ApiName { get; }
    public CublasStatus Status { get; }
    /// <summary>The C name of the status, e.g. "CUBLAS_STATUS_NOT_SUPPORTED".</summary>
    public string StatusName { get; }

    /// <summary>The cublas_api.h name of a status (a numeric placeholder for an unknown one).</summary>
    public static string NameOf(CublasStatus status) => status switch
    {
        CublasStatus.Success => "CUBLAS_STATUS_SUCCESS",
        CublasStatus.NotInitialized => "CUBLAS_STATUS_NOT_INITIALIZED",
        CublasStatus.AllocFailed => "CUBLAS_STATUS_ALLOC_FAILED",
        CublasStatus.InvalidValue => "CUBLAS_STATUS_INVALID_VALUE",
        CublasStatus.ArchMismatch => "CUBLAS_STATUS_ARCH_MISMATCH",
        CublasStatus.MappingError => "CUBLAS_STATUS_MAPPING_ERROR",
        CublasStatus.ExecutionFailed => "CUBLAS_STATUS_EXECUTION_FAILED",
        CublasStatus.InternalError => "CUBLAS_STATUS_INTERNAL_ERROR",
        CublasStatus.NotSupported => "CUBLAS_STATUS_NOT_SUPPORTED",
        CublasStatus.LicenseError => "CUBLAS_STATUS_LICENSE_ERROR",
        _ => $"CUBLAS_STATUS_{(int)status}",
    };

    internal static void Check(CublasStatus status, string apiName, string? detail = null)
    {
        if (status != CublasStatus.Success)
            throw new CublasException(apiName, status, detail);
    }
}
