using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

internal static unsafe partial class CuDriver
{
    [LibraryImport(Lib, EntryPoint = "cuInit")]
    internal static partial CUresult cuInit(uint flags);

    /// <summary>Driver version as 1000*major + 10*minor (e.g. 13000).</summary>
    [LibraryImport(Lib, EntryPoint = "cuDriverGetVersion")]
    internal static partial CUresult cuDriverGetVersion(int* driverVersion);

    [LibraryImport(Lib, EntryPoint = "cuDeviceGetCount")]
    internal static partial CUresult cuDeviceGetCount(int* count);

    [LibraryImport(Lib, EntryPoint = "cuDeviceGet")]
    internal static partial CUresult cuDeviceGet(int* device, int ordinal);

    [LibraryImport(Lib, EntryPoint = "cuDeviceGetName")]
    internal static partial CUresult cuDeviceGetName(byte* name, int len, int device);

    [LibraryImport(Lib, EntryPoint = "cuDeviceGetAttribute")]
    internal static partial CUresult cuDeviceGetAttribute(int* pi, CUdevice_attribute attrib, int device);

    [LibraryImport(Lib, EntryPoint = "cuDeviceTotalMem_v2")]
    internal static partial CUresult cuDeviceTotalMem(nuint* bytes, int device);
}
