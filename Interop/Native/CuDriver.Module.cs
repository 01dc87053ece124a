using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

/// <summary>JIT options of <c>cuModuleLoadDataEx</c> (cuda.h <c>CUjit_option</c>), the ones MoeNative passes.</summary>
internal enum CUjit_option
{
    /// <summary>void*: buffer receiving informational log messages.</summary>
    CU_JIT_INFO_LOG_BUFFER = 3,
    /// <summary>unsigned int: IN buffer size in bytes, OUT bytes filled.</summary>
    CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4,
    /// <summary>void*: buffer receiving error log messages.</summary>
    CU_JIT_ERROR_LOG_BUFFER = 5,
    /// <summary>unsigned int: IN buffer size in bytes, OUT bytes filled.</summary>
    CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
    /// <summary>int: 1 = verbose log (registers, spills, shared memory per entry).</summary>
    CU_JIT_LOG_VERBOSE = 12,
}

internal static unsafe partial class CuDriver
{
    /// <summary>Loads a NUL-terminated PTX (or cubin) image and JITs it for the current context's device.
    /// <paramref name="optionValues"/>[i] holds the value of <paramref name="options"/>[i] (integers cast to void*).</summary>
    [LibraryImport(Lib, EntryPoint = "cuModuleLoadDataEx")]
    internal static partial CUresult cuModuleLoadDataEx(IntPtr* module, void* image, uint numOptions, CUjit_option* options, void** optionValues);

    [LibraryImport(Lib, EntryPoint = "cuModuleGetFunction")]
    internal static partial CUresult cuModuleGetFunction(IntPtr* hfunc, IntPtr hmod, byte* name);

    [LibraryImport(Lib, EntryPoint = "cuModuleUnload")]
    internal static partial CUresult cuModuleUnload(IntPtr hmod);

    [LibraryImport(Lib, EntryPoint = "cuFuncGetAttribute")]
    internal static partial CUresult cuFuncGetAttribute(int* pi, CUfunction_attribute attrib, IntPtr hfunc);

    [LibraryImport(Lib, EntryPoint = "cuFuncSetAttribute")]
    internal static partial CUresult cuFuncSetAttribute(IntPtr hfunc, CUfunction_attribute attrib, int value);

    /// <summary>Offset and size of kernel parameter <paramref name="paramIndex"/> (CUDA 12.4+);
    /// CUDA_ERROR_INVALID_VALUE past the last parameter.</summary>
    [LibraryImport(Lib, EntryPoint = "cuFuncGetParamInfo")]
    internal static partial CUresult cuFuncGetParamInfo(IntPtr func, nuint paramIndex, nuint* paramOffset, nuint* paramSize);
}
