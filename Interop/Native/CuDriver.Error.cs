using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

internal static unsafe partial class CuDriver
{
    /// <summary>Sets <paramref name="pStr"/> to a static C string (e.g. "CUDA_ERROR_INVALID_VALUE");
    /// CUDA_ERROR_INVALID_VALUE and a null string for an unknown code.</summary>
    [LibraryImport(Lib, EntryPoint = "cuGetErrorName")]
    internal static partial CUresult cuGetErrorName(CUresult error, byte** pStr);

    /// <summary>Sets <paramref name="pStr"/> to a static description of <paramref name="error"/>.</summary>
    [LibraryImport(Lib, EntryPoint = "cuGetErrorString")]
    internal static partial CUresult cuGetErrorString(CUresult error, byte** pStr);

    /// <summary>Name and text of a code, or placeholders when the driver does not know it. Never throws
    /// (falls back to the numeric value when even the driver library is unusable).</summary>
    internal static (string Name, string Text) Describe(CUresult error)
    {
        try
        {
            byte* name = null, text = null;
            string n = cuGetErrorName(error, &name) == CUresult.CUDA_SUCCESS && name != null
                ? Marshal.PtrToStringUTF8((IntPtr)name) ?? "?" : $"CUresult {(int)error}";
            string t = cuGetErrorString(error, &text) == CUresult.CUDA_SUCCESS && text != null
                ? Marshal.PtrToStringUTF8((IntPtr)text) ?? "?" : "unknown error code";
            return (n, t);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return (Enum.IsDefined(error) ? error.ToString() : $"CUresult {(int)error}", "driver library unavailable to describe the error");
        }
    }
}
