using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

internal static unsafe partial class CuDriver
{
    /// <summary>Retains (creating on first retain) the device's primary context: the one the CUDA runtime and
    /// cuBLAS use, so both share allocations and streams with us.</summary>
    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRetain")]
    internal static partial CUresult cuDevicePrimaryCtxRetain(IntPtr* pctx, int device);

    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRelease_v2")]
    internal static partial CUresult cuDevicePrimaryCtxRelease(int device);

    [LibraryImport(Lib, EntryPoint = "cuCtxSetCurrent")]
    internal static partial CUresult cuCtxSetCurrent(IntPtr ctx);

    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxGetState")]
    internal static partial CUresult cuDevicePrimaryCtxGetState(int device, uint* flags, int* active);

    [LibraryImport(Lib, EntryPoint = "cuCtxGetCurrent")]
    internal static partial CUresult cuCtxGetCurrent(IntPtr* pctx);

    [LibraryImport(Lib, EntryPoint = "cuCtxGetDevice")]
    internal static partial CUresult cuCtxGetDevice(int* device);

    [LibraryImport(Lib, EntryPoint = "cuCtxSynchronize")]
    internal static partial CUresult cuCtxSynchronize();
}
