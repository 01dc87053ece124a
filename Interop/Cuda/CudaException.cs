using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>A CUDA driver API call returned an error. The message names the call, the numeric code, the
/// driver's name for it (<c>cuGetErrorName</c>) and its text (<c>cuGetErrorString</c>).</summary>
public class CudaException : Exception
{
    public CudaException(string apiName, CUresult result, string errorName, string errorString, string? detail = null)
        : this($"{apiName}{(detail is null ? "" : $" ({detail})")} failed: {errorName} ({(int)result}): {errorString}",
               apiName, result, errorName, errorString)
    {
    }

    protected CudaException(string message, string apiName, CUresult result, string errorName, string errorString)
        : base(message)
    {
        ApiName = apiName;
        Result = result;
        ErrorName = errorName;
        ErrorString = errorString;
    }

    /// <summary>The C function that failed, e.g. "cuMemAlloc".</summary>
    public string ApiName { get; }
    public CUresult Result { get; }
    /// <summary>e.g. "CUDA_ERROR_OUT_OF_MEMORY".</summary>
    public string ErrorName { get; }
    /// <summary>e.g. "out of memory".</summary>
    public string ErrorString { get; }

    internal static CudaException FromResult(string apiName, CUresult result, string? detail = null)
    {
        (string name, string text) = CuDriver.Describe(result);
        return new CudaException(apiName, result, name, text, detail);
    }
}

/// <summary><c>cuModuleLoadDataEx</c> failed to JIT a PTX module; <see cref="Log"/> holds the JIT error log
/// (the ptxas messages with line numbers) and the message contains it too.</summary>
public sealed class CudaJitException : CudaException
{
    public CudaJitException(string moduleName, CUresult result, string errorName, string errorString, string log)
        : base($"JIT of PTX module '{moduleName}' failed in cuModuleLoadDataEx: {errorName} ({(int)result}): {errorString}\n" +
               $"--- JIT error log of '{moduleName}' ---\n{(log.Length == 0 ? "(empty)" : log)}",
               "cuModuleLoadDataEx", result, errorName, errorString)
    {
        ModuleName = moduleName;
        Log = log;
    }

    /// <summary>Name given to <see cref="CudaModule.Load"/>.</summary>
    public string ModuleName { get; }
    /// <summary>The JIT error log (may be empty when the driver wrote none).</summary>
    public string Log { get; }
}
