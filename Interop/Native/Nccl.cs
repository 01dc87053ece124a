using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

/// <summary>
/// Raw NCCL 2 API (nccl.h), methods named after the C API (the exported symbols). Returns the raw
/// <see cref="NcclResult"/>; callers throw <see cref="NcclException"/>. Device buffers are <see cref="ulong"/>
/// pointers, streams and communicators <see cref="IntPtr"/> (<c>cudaStream_t</c> is a driver <c>CUstream</c>).
/// NOTE: the managed entry points (<see cref="NcclCommunicator"/>) call <see cref="NativeLibraries.Require"/> first,
/// so a missing libnccl surfaces as our <see cref="DllNotFoundException"/> listing every path tried.
/// </summary>
internal static unsafe partial class Nccl
{
    private const string Lib = NativeLibraries.Nccl;

    // NOTE: runs before any [LibraryImport] stub of this class is first called, so the resolver is in place and
    // NCCL_NVLS_ENABLE=0 is in the C environment before NCCL reads it.
    static Nccl()
    {
        NativeLibraries.EnsureResolverRegistered();
        NcclEnvironment.Apply();
    }

    /// <summary>Version code: major*10000 + minor*100 + patch (2.9+; e.g. 22805 for 2.28.5).</summary>
    [LibraryImport(Lib, EntryPoint = "ncclGetVersion")]
    internal static partial NcclResult ncclGetVersion(int* version);

    [LibraryImport(Lib, EntryPoint = "ncclGetUniqueId")]
    internal static partial NcclResult ncclGetUniqueId(NcclUniqueIdNative* uniqueId);

    /// <summary>ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank): the id by value; the CUDA
    /// device is the current context's.</summary>
    [LibraryImport(Lib, EntryPoint = "ncclCommInitRank")]
    internal static partial NcclResult ncclCommInitRank(IntPtr* comm, int nranks, NcclUniqueIdNative commId, int rank);

    /// <summary>ncclCommInitRankConfig(..., ncclConfig_t* config): with <see cref="NcclConfigNative"/> (non-blocking).</summary>
    [LibraryImport(Lib, EntryPoint = "ncclCommInitRankConfig")]
    internal static partial NcclResult ncclCommInitRankConfig(IntPtr* comm, int nranks, NcclUniqueIdNative commId, int rank, NcclConfigNative* config);

    /// <summary>ncclCommInitAll(ncclComm_t* comm, int ndev, const int* devlist): ndev communicators of one process (blocking).</summary>
    [LibraryImport(Lib, EntryPoint = "ncclCommInitAll")]
    internal static partial NcclResult ncclCommInitAll(IntPtr* comms, int ndev, int* devlist);

    /// <summary>Flushes the communicator's work; a non-blocking one reports completion through ncclCommGetAsyncError.</summary>
    [LibraryImport(Lib, EntryPoint = "ncclCommFinalize")]
    internal static partial NcclResult ncclCommFinalize(IntPtr comm);

    [LibraryImport(Lib, EntryPoint = "ncclCommDestroy")]
    internal static partial NcclResult ncclCommDestroy(IntPtr comm);

    [LibraryImport(Lib, EntryPoint = "ncclCommAbort")]
    internal static partial NcclResult ncclCommAbort(IntPtr comm);

    [LibraryImport(Lib, EntryPoint = "ncclCommGetAsyncError")]
    internal static partial NcclResult ncclCommGetAsyncError(IntPtr comm, NcclResult* asyncError);

    /// <summary>const char* ncclGetErrorString(ncclResult_t): a static string (not freed).</summary>
    [LibraryImport(Lib, EntryPoint = "ncclGetErrorString")]
    internal static partial IntPtr ncclGetErrorString(NcclResult result);

    [LibraryImport(Lib, EntryPoint = "ncclGroupStart")]
    internal static partial NcclResult ncclGroupStart();

    [LibraryImport(Lib, EntryPoint = "ncclGroupEnd")]
    internal static partial NcclResult ncclGroupEnd();

    [LibraryImport(Lib, EntryPoint = "ncclSend")]
    internal static partial NcclResult ncclSend(ulong sendbuff, nuint count, NcclDataType datatype, int peer, IntPtr comm, IntPtr stream);

    [LibraryImport(Lib, EntryPoint = "ncclRecv")]
    internal static partial NcclResult ncclRecv(ulong recvbuff, nuint count, NcclDataType datatype, int peer, IntPtr comm, IntPtr stream);

    [LibraryImport(Lib, EntryPoint = "ncclAllReduce")]
    internal static partial NcclResult ncclAllReduce(ulong sendbuff, ulong recvbuff, nuint count, NcclDataType datatype,
        NcclReduceOp op, IntPtr comm, IntPtr stream);
}

/// <summary><c>ncclUniqueId</c>: 128 opaque bytes (NCCL_UNIQUE_ID_BYTES), passed by value.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct NcclUniqueIdNative
{
    public const int Bytes = 128;
    public fixed byte Internal[Bytes];
}

/// <summary>
/// The head of <c>ncclConfig_t</c> as NCCL 2.17 laid it out (size, magic, version, blocking, cgaClusterSize, minCTAs,
/// maxCTAs, netName, splitShare; 48 bytes on 64-bit). NCCL copies <c>size</c> bytes over its defaults and reads fields by
/// <c>version</c>, so this prefix is valid for every later NCCL (fields after it keep their defaults).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct NcclConfigNative
{
    /// <summary>NCCL_API_MAGIC.</summary>
    public const uint Magic = 0xcafebeef;
    /// <summary>NCCL_VERSION(2, 17, 0): the layout of this prefix.</summary>
    public const uint LayoutVersion = 21700;
    /// <summary>NCCL_CONFIG_UNDEF_INT: "NCCL picks".</summary>
    public const int Undefined = int.MinValue;

    public nuint size;
    public uint magic;
    public uint version;
    public int blocking;
    public int cgaClusterSize;
    public int minCTAs;
    public int maxCTAs;
    public IntPtr netName;
    public int splitShare;
    /// <summary>The 4 bytes after splitShare (padding in 2.17, <c>trafficClass</c> since 2.25): undefined either way,
    /// and NCCL resets trafficClass to its default for a config of version &lt; 2.25.</summary>
    public int trafficClass;

    /// <summary>NCCL_CONFIG_INITIALIZER for this prefix, with <c>blocking</c> set.</summary>
    public static unsafe NcclConfigNative Create(bool blocking) => new()
    {
        size = (nuint)sizeof(NcclConfigNative),
        magic = Magic,
        version = LayoutVersion,
        blocking = blocking ? 1 : 0,
        cgaClusterSize = Undefined,
        minCTAs = Undefined,
        maxCTAs = Undefined,
        netName = IntPtr.Zero,
        splitShare = Undefined,
        trafficClass = Undefined,
    };
}
