using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

internal static unsafe partial class CuDriver
{
    /// <summary>CU_MEMHOSTALLOC_PORTABLE: pinned for every context, not only the current one.</summary>
    internal const uint CU_MEMHOSTALLOC_PORTABLE = 0x01;
    /// <summary>CU_MEMHOSTALLOC_WRITECOMBINED: write-combined (fast host writes and PCIe reads, slow host reads).</summary>
    internal const uint CU_MEMHOSTALLOC_WRITECOMBINED = 0x04;

    [LibraryImport(Lib, EntryPoint = "cuMemHostAlloc")]
    internal static partial CUresult cuMemHostAlloc(void** pp, nuint bytesize, uint flags);

    [LibraryImport(Lib, EntryPoint = "cuMemFreeHost")]
    internal static partial CUresult cuMemFreeHost(void* p);
}
