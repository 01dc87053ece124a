using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

/// <summary>
/// Raw cuBLAS v2 API (cublas_api.h / cublas_v2.h), methods named after the C API, <c>EntryPoint</c> the exported
/// symbol (<c>cublasCreate</c> → <c>cublasCreate_v2</c>). Returns the raw <see cref="CublasStatus"/>; callers
/// throw <see cref="CublasException"/>. Device pointers are <see cref="ulong"/>; host scalars are pointers.
/// </summary>
internal static unsafe partial class Cublas
{
    private const string Lib = NativeLibraries.Cublas;

    // NOTE: runs before any [LibraryImport] stub of this class is first called, so the resolver is in place.
    static Cublas() => NativeLibraries.EnsureResolverRegistered();

    [LibraryImport(Lib, EntryPoint = "cublasCreate_v2")]
    internal static partial CublasStatus cublasCreate(IntPtr* handle);

    [LibraryImport(Lib, EntryPoint = "cublasDestroy_v2")]
    internal static partial CublasStatus cublasDestroy(IntPtr handle);

    /// <summary>Version as major*10000 + minor*100 + patch (cuBLAS 12+; e.g. 130000).</summary>
    [LibraryImport(Lib, EntryPoint = "cublasGetVersion_v2")]
    internal static partial CublasStatus cublasGetVersion(IntPtr handle, int* version);

    [LibraryImport(Lib, EntryPoint = "cublasSetStream_v2")]
    internal static partial CublasStatus cublasSetStream(IntPtr handle, IntPtr streamId);

    [LibraryImport(Lib, EntryPoint = "cublasSetWorkspace_v2")]
    internal static partial CublasStatus cublasSetWorkspace(IntPtr handle, ulong workspace, nuint workspaceSizeInBytes);

    [LibraryImport(Lib, EntryPoint = "cublasSetMathMode")]
    internal static partial CublasStatus cublasSetMathMode(IntPtr handle, CublasMath mode);
}
