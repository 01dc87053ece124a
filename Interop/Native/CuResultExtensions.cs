namespace MoeNative.Interop.Native;

/// <summary>Turns a failing <see cref="CUresult"/> into a <see cref="CudaException"/>.</summary>
internal static class CuResultExtensions
{
    /// <summary>Returns when <paramref name="result"/> is CUDA_SUCCESS; otherwise throws a
    /// <see cref="CudaException"/> naming <paramref name="api"/>, the code, its name and its text.</summary>
    public static void Check(this CUresult result, string api, string? detail = null)
    {
        if (result != CUresult.CUDA_SUCCESS)
            throw CudaException.FromResult(api, result, detail);
    }
}
