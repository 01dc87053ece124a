using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

/// <summary>cuda.h <c>CUstreamCaptureMode</c>.</summary>
internal enum CUstreamCaptureMode
{
    CU_STREAM_CAPTURE_MODE_GLOBAL = 0,
    CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1,
    CU_STREAM_CAPTURE_MODE_RELAXED = 2,
}

internal static unsafe partial class CuDriver
{
    [LibraryImport(Lib, EntryPoint = "cuStreamBeginCapture_v2")]
    internal static partial CUresult cuStreamBeginCapture(IntPtr hStream, CUstreamCaptureMode mode);

    [LibraryImport(Lib, EntryPoint = "cuStreamEndCapture")]
    internal static partial CUresult cuStreamEndCapture(IntPtr hStream, IntPtr* phGraph);

    [LibraryImport(Lib, EntryPoint = "cuGraphInstantiateWithFlags")]
    internal static partial CUresult cuGraphInstantiateWithFlags(IntPtr* phGraphExec, IntPtr hGraph, ulong flags);

    [LibraryImport(Lib, EntryPoint = "cuGraphLaunch")]
    internal static partial CUresult cuGraphLaunch(IntPtr hGraphExec, IntPtr hStream);

    [LibraryImport(Lib, EntryPoint = "cuGraphExecDestroy")]
    internal static partial CUresult cuGraphExecDestroy(IntPtr hGraphExec);

    [LibraryImport(Lib, EntryPoint = "cuGraphDestroy")]
    internal static partial CUresult cuGraphDestroy(IntPtr hGraph);
}
