using System.Runtime.InteropServices;
using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>
/// An NCCL call failed (a result other than <c>ncclSuccess</c>), or an exchange did not complete in time and the
/// communicator was aborted (<see cref="Result"/> = <see cref="NcclResult.Timeout"/>). The message names the call,
/// the result and NCCL's own text (<c>ncclGetErrorString</c>).
/// </summary>
public sealed class NcclException : Exception
{
    public NcclException(string apiName, NcclResult result, string? detail = null)
        : base($"{apiName}{(detail is null ? "" : $" ({detail})")} failed: {NameOf(result)} ({(int)result}): {ErrorString(result)}." +
               (result is NcclResult.Timeout or NcclResult.InProgress ? "" : " Run with NCCL_DEBUG=WARN for NCCL's reason."))
    {
        ApiName = apiName;
        Result = result;
    }

    /// <summary>The C function that failed (e.g. "ncclGroupEnd"), or what was waited for.</summary>
    public string ApiName { get; }

    public NcclResult Result { get; }

    /// <summary>The nccl.h name of a result, e.g. "ncclInvalidArgument" (a numeric placeholder for an unknown one).</summary>
    public static string NameOf(NcclResult result) => result switch
    {
        NcclResult.Success => "ncclSuccess",
        NcclResult.UnhandledCudaError => "ncclUnhandledCudaError",
        NcclResult.SystemError => "ncclSystemError",
        NcclResult.InternalError => "ncclInternalError",
        NcclResult.InvalidArgument => "ncclInvalidArgument",
        NcclResult.InvalidUsage => "ncclInvalidUsage",
        NcclResult.RemoteError => "ncclRemoteError",
        NcclResult.InProgress => "ncclInProgress",
        NcclResult.Timeout => "ncclTimeout",
        _ => $"ncclResult_{(int)result}",
    };

    /// <summary><c>ncclGetErrorString</c> when libnccl is loaded, else a short text of our own.</summary>
    public static string ErrorString(NcclResult result)
    {
        if (NativeLibraries.TryRequire(NativeLibraryKind.Nccl, out _, out _))
        {
            string? text = Marshal.PtrToStringUTF8(Nccl.ncclGetErrorString(result));
            if (!string.IsNullOrWhiteSpace(text)) return text;
        }
        return result switch
        {
            NcclResult.Success => "no error",
            NcclResult.UnhandledCudaError => "unhandled cuda error",
            NcclResult.SystemError => "unhandled system error",
            NcclResult.InternalError => "internal error",
            NcclResult.InvalidArgument => "invalid argument",
            NcclResult.InvalidUsage => "invalid usage",
            NcclResult.RemoteError => "remote process exited or there was a network error",
            NcclResult.InProgress => "NCCL operation in progress",
            NcclResult.Timeout => "timeout",
            _ => "unknown result code",
        };
    }

    internal static void Check(NcclResult result, string apiName, string? detail = null)
    {
        if (result is not (NcclResult.Success or NcclResult.InProgress))
            throw new NcclException(apiName, result, detail);
    }
}
