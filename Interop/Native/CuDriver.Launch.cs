using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

/// <summary>cuda.h <c>CUlaunchAttributeID</c>: the attributes MoeNative may set.</summary>
internal enum CUlaunchAttributeID
{
    CU_LAUNCH_ATTRIBUTE_IGNORE = 0,
    CU_LAUNCH_ATTRIBUTE_COOPERATIVE = 2,
    CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION = 4,
    CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6,
}

/// <summary>
/// cuda.h <c>CUlaunchAttribute</c>: <c>{ CUlaunchAttributeID id; char pad[8 - sizeof(id)]; CUlaunchAttributeValue value; }</c>
/// where the value is a 64-byte union. 72 bytes; the value starts at offset 8.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 72)]
internal struct CUlaunchAttribute
{
    [FieldOffset(0)] public CUlaunchAttributeID Id;
    // value.clusterDim = { unsigned x, y, z }
    [FieldOffset(8)] public uint ClusterDimX;
    [FieldOffset(12)] public uint ClusterDimY;
    [FieldOffset(16)] public uint ClusterDimZ;
    // value.cooperative / value.programmaticStreamSerializationAllowed (int)
    [FieldOffset(8)] public int IntValue;
}

/// <summary>
/// cuda.h <c>CUlaunchConfig</c>: seven <c>unsigned int</c> (grid xyz, block xyz, sharedMemBytes) at 0..27,
/// padding, <c>CUstream hStream</c> at 32, <c>CUlaunchAttribute* attrs</c> at 40, <c>unsigned numAttrs</c> at 48;
/// 56 bytes (64-bit).
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 56)]
internal unsafe struct CUlaunchConfig
{
    [FieldOffset(0)] public uint GridDimX;
    [FieldOffset(4)] public uint GridDimY;
    [FieldOffset(8)] public uint GridDimZ;
    [FieldOffset(12)] public uint BlockDimX;
    [FieldOffset(16)] public uint BlockDimY;
    [FieldOffset(20)] public uint BlockDimZ;
    [FieldOffset(24)] public uint SharedMemBytes;
    [FieldOffset(32)] public IntPtr HStream;
    [FieldOffset(40)] public CUlaunchAttribute* Attrs;
    [FieldOffset(48)] public uint NumAttrs;
}

internal static unsafe partial class CuDriver
{
    // Markers of the `extra` array of cuLaunchKernel (cuda.h: ((void*)0x00), ((void*)0x01), ((void*)0x02)).
    internal static readonly void* CU_LAUNCH_PARAM_END = (void*)0;
    internal static readonly void* CU_LAUNCH_PARAM_BUFFER_POINTER = (void*)1;
    internal static readonly void* CU_LAUNCH_PARAM_BUFFER_SIZE = (void*)2;

    /// <summary>Launches <paramref name="f"/>; MoeNative passes <paramref name="kernelParams"/> = null and the
    /// argument buffer through <paramref name="extra"/> = { BUFFER_POINTER, &amp;args, BUFFER_SIZE, &amp;size, END }.</summary>
    [LibraryImport(Lib, EntryPoint = "cuLaunchKernel")]
    internal static partial CUresult cuLaunchKernel(IntPtr f,
        uint gridDimX, uint gridDimY, uint gridDimZ,
        uint blockDimX, uint blockDimY, uint blockDimZ,
        uint sharedMemBytes, IntPtr hStream, void** kernelParams, void** extra);

    [LibraryImport(Lib, EntryPoint = "cuLaunchKernelEx")]
    internal static partial CUresult cuLaunchKernelEx(CUlaunchConfig* config, IntPtr f, void** kernelParams, void** extra);
}
