using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

/// <summary>
/// Raw CUDA driver API, one partial file per area (CuDriver.Device.cs, .Memory.cs, ...), methods named after the
/// C API; <c>EntryPoint</c> is the versioned symbol the CUDA 12/13 headers map the name to (<c>cuMemAlloc</c> →
/// <c>cuMemAlloc_v2</c>). Every function returns the raw <see cref="CUresult"/>; callers turn failures into
/// <see cref="CudaException"/> with <see cref="CuResultExtensions.Check"/>. Handles are plain <see cref="IntPtr"/>,
/// device pointers <see cref="ulong"/> (CUdeviceptr), sizes <see cref="nuint"/> (size_t).
/// </summary>
internal static unsafe partial class CuDriver
{
    private const string Lib = NativeLibraries.CudaDriver;

    // NOTE: runs before any [LibraryImport] stub of this class is first called, so the resolver is in place.
    static CuDriver() => NativeLibraries.EnsureResolverRegistered();
}
