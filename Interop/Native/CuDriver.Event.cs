using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

internal static unsafe partial class CuDriver
{
    /// <summary>CU_EVENT_DEFAULT: timing enabled.</summary>
    internal const uint CU_EVENT_DEFAULT = 0;

    [LibraryImport(Lib, EntryPoint = "cuEventCreate")]
    internal static partial CUresult cuEventCreate(IntPtr* phEvent, uint flags);

    [LibraryImport(Lib, EntryPoint = "cuEventDestroy_v2")]
    internal static partial CUresult cuEventDestroy(IntPtr hEvent);

    [LibraryImport(Lib, EntryPoint = "cuEventRecord")]
    internal static partial CUresult cuEventRecord(IntPtr hEvent, IntPtr hStream);

    [LibraryImport(Lib, EntryPoint = "cuEventSynchronize")]
    internal static partial CUresult cuEventSynchronize(IntPtr hEvent);

    [LibraryImport(Lib, EntryPoint = "cuEventQuery")]
    internal static partial CUresult cuEventQuery(IntPtr hEvent);

    [LibraryImport(Lib, EntryPoint = "cuEventElapsedTime")]
    private static partial CUresult cuEventElapsedTime_v1(float* pMilliseconds, IntPtr hStart, IntPtr hEnd);

    [LibraryImport(Lib, EntryPoint = "cuEventElapsedTime_v2")]
    private static partial CUresult cuEventElapsedTime_v2(float* pMilliseconds, IntPtr hStart, IntPtr hEnd);

    private static int s_elapsedTimeVersion; // 0 unknown, 1 or 2

    /// <summary>
    /// <c>cuEventElapsedTime</c>. CUDA 12.8 added <c>cuEventElapsedTime_v2</c> (same signature) and the CUDA 13
    /// header maps the name to it; older drivers export only the unversioned symbol and newer ones still export
    /// it. So the symbol is chosen once at run time: <c>_v2</c> when the loaded driver exports it, else the
    /// unversioned one.
    /// </summary>
    internal static CUresult cuEventElapsedTime(float* pMilliseconds, IntPtr hStart, IntPtr hEnd)
    {
        int version = s_elapsedTimeVersion;
        if (version == 0)
            s_elapsedTimeVersion = version = NativeLibraries.HasExport(NativeLibraryKind.CudaDriver, "cuEventElapsedTime_v2") ? 2 : 1;
        return version == 2 ? cuEventElapsedTime_v2(pMilliseconds, hStart, hEnd) : cuEventElapsedTime_v1(pMilliseconds, hStart, hEnd);
    }
}
