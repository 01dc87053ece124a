using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

internal static unsafe partial class CuDriver
{
    [LibraryImport(Lib, EntryPoint = "cuMemAlloc_v2")]
    internal static partial CUresult cuMemAlloc(ulong* dptr, nuint bytesize);

    [LibraryImport(Lib, EntryPoint = "cuMemFree_v2")]
    internal static partial CUresult cuMemFree(ulong dptr);

    /// <summary>Base and size of the allocation holding <paramref name="dptr"/> (CUDA_ERROR_NOT_FOUND when none does).</summary>
    [LibraryImport(Lib, EntryPoint = "cuMemGetAddressRange_v2")]
    internal static partial CUresult cuMemGetAddressRange(ulong* pbase, nuint* psize, ulong dptr);

    [LibraryImport(Lib, EntryPoint = "cuMemGetInfo_v2")]
    internal static partial CUresult cuMemGetInfo(nuint* free, nuint* total);

    // Synchronous copies run on the legacy default stream: ordered after all work on blocking streams.
    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoD_v2")]
    internal static partial CUresult cuMemcpyHtoD(ulong dstDevice, void* srcHost, nuint byteCount);

    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoH_v2")]
    internal static partial CUresult cuMemcpyDtoH(void* dstHost, ulong srcDevice, nuint byteCount);

    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoD_v2")]
    internal static partial CUresult cuMemcpyDtoD(ulong dstDevice, ulong srcDevice, nuint byteCount);

    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoDAsync_v2")]
    internal static partial CUresult cuMemcpyHtoDAsync(ulong dstDevice, void* srcHost, nuint byteCount, IntPtr stream);

    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoHAsync_v2")]
    internal static partial CUresult cuMemcpyDtoHAsync(void* dstHost, ulong srcDevice, nuint byteCount, IntPtr stream);

    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoDAsync_v2")]
    internal static partial CUresult cuMemcpyDtoDAsync(ulong dstDevice, ulong srcDevice, nuint byteCount, IntPtr stream);

    [LibraryImport(Lib, EntryPoint = "cuMemsetD8_v2")]
    internal static partial CUresult cuMemsetD8(ulong dstDevice, byte value, nuint count);

    [LibraryImport(Lib, EntryPoint = "cuMemsetD8Async")]
    internal static partial CUresult cuMemsetD8Async(ulong dstDevice, byte value, nuint count, IntPtr stream);

    [LibraryImport(Lib, EntryPoint = "cuMemsetD32_v2")]
    internal static partial CUresult cuMemsetD32(ulong dstDevice, uint value, nuint count);

    [LibraryImport(Lib, EntryPoint = "cuMemsetD32Async")]
    internal static partial CUresult cuMemsetD32Async(ulong dstDevice, uint value, nuint count, IntPtr stream);
}
