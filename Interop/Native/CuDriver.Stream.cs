using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

internal static unsafe partial class CuDriver
{
    /// <summary>CU_STREAM_DEFAULT: a blocking stream (synchronises with the legacy default stream).</summary>
    internal const uint CU_STREAM_DEFAULT = 0;
    /// <summary>CU_STREAM_NON_BLOCKING.</summary>
    internal const uint CU_STREAM_NON_BLOCKING = 1;

    [LibraryImport(Lib, EntryPoint = "cuStreamCreate")]
    internal static partial CUresult cuStreamCreate(IntPtr* phStream, uint flags);

    [LibraryImport(Lib, EntryPoint = "cuStreamDestroy_v2")]
    internal static partial CUresult cuStreamDestroy(IntPtr hStream);

    [LibraryImport(Lib, EntryPoint = "cuStreamSynchronize")]
    internal static partial CUresult cuStreamSynchronize(IntPtr hStream);

    [LibraryImport(Lib, EntryPoint = "cuStreamQuery")]
    internal static partial CUresult cuStreamQuery(IntPtr hStream);

    [LibraryImport(Lib, EntryPoint = "cuStreamWaitEvent")]
    internal static partial CUresult cuStreamWaitEvent(IntPtr hStream, IntPtr hEvent, uint flags);
}
