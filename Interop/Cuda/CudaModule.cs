using System.Runtime.InteropServices;
using System.Text;
using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>A PTX module JIT-compiled for the context's device (cuModuleLoadDataEx with the info and error log
/// buffers and verbose logging). Unloaded on Dispose; its kernels are unusable afterwards.</summary>
public sealed class CudaModule : IDisposable
{
    private const int LogBytes = 64 * 1024;
    private readonly SafeCudaModuleHandle _handle;

    private CudaModule(CudaContext ctx, SafeCudaModuleHandle handle, string moduleName, string infoLog)
    {
        Context = ctx;
        _handle = handle;
        ModuleName = moduleName;
        InfoLog = infoLog;
    }

    public CudaContext Context { get; }
    /// <summary>The name given at load (for messages and caches).</summary>
    public string ModuleName { get; }
    /// <summary>The JIT's informational log (verbose: registers, spills, shared memory per entry).</summary>
    public string InfoLog { get; }

    internal IntPtr Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
            return _handle.DangerousGetHandle();
        }
    }

    internal bool IsDisposed => _handle.IsClosed;

    /// <summary>JIT-compiles <paramref name="ptxText"/> in <paramref name="ctx"/>.</summary>
    /// <exception cref="ArgumentException">Empty text or name, or the text contains a NUL character.</exception>
    /// <exception cref="CudaJitException">The JIT failed; carries the module name and the JIT error log.</exception>
    /// <exception cref="CudaException">Another driver failure.</exception>
    public static unsafe CudaModule Load(CudaContext ctx, string ptxText, string moduleName)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentException.ThrowIfNullOrEmpty(ptxText);
        ArgumentException.ThrowIfNullOrEmpty(moduleName);
        if (ptxText.Contains('\0'))
            throw new ArgumentException("PTX text must not contain NUL characters.", nameof(ptxText));

        byte[] image = new byte[Encoding.UTF8.GetByteCount(ptxText) + 1]; // NUL-terminated
        Encoding.UTF8.GetBytes(ptxText, image);
        byte[] infoLog = new byte[LogBytes];
        byte[] errorLog = new byte[LogBytes];

        ctx.MakeCurrent();
        IntPtr module;
        CUresult result;
        uint infoFilled, errorFilled;
        fixed (byte* pImage = image, pInfo = infoLog, pError = errorLog)
        {
            CUjit_option* options = stackalloc CUjit_option[5];
            void** values = stackalloc void*[5];
            options[0] = CUjit_option.CU_JIT_INFO_LOG_BUFFER; values[0] = pInfo;
            options[1] = CUjit_option.CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES; values[1] = (void*)(nuint)LogBytes;
            options[2] = CUjit_option.CU_JIT_ERROR_LOG_BUFFER; values[2] = pError;
            options[3] = CUjit_option.CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES; values[3] = (void*)(nuint)LogBytes;
            options[4] = CUjit_option.CU_JIT_LOG_VERBOSE; values[4] = (void*)(nuint)1;
            result = CuDriver.cuModuleLoadDataEx(&module, pImage, 5, options, values);
            // OUT: the size options now hold the bytes written (an unsigned int in the pointer-sized slot).
            infoFilled = (uint)(nuint)values[1];
            errorFilled = (uint)(nuint)values[3];
        }
        string info = DecodeLog(infoLog, infoFilled);
        if (result != CUresult.CUDA_SUCCESS)
        {
            (string name, string text) = CuDriver.Describe(result);
            string log = DecodeLog(errorLog, errorFilled);
            if (log.Length == 0)
                log = info;
            throw new CudaJitException(moduleName, result, name, text, log);
        }
        return new CudaModule(ctx, new SafeCudaModuleHandle(module, ctx.SafeHandle), moduleName, info);
    }

    /// <summary>The kernel <c>.entry <paramref name="entryName"/></c>, for its attributes; launching needs
    /// <see cref="GetKernel(string, int)"/>.</summary>
    /// <exception cref="CudaException">No such entry (CUDA_ERROR_NOT_FOUND); the message names entry and module.</exception>
    public CudaKernel GetKernel(string entryName) => GetKernel(entryName, null);

    /// <summary>The kernel <c>.entry <paramref name="entryName"/></c> with <paramref name="parameterCount"/>
    /// <c>.param</c>s (from its PTX signature): launches check the args struct's size against the end of the last
    /// parameter, as the driver lays them out.</summary>
    /// <exception cref="CudaException">No such entry (CUDA_ERROR_NOT_FOUND); the message names entry and module.</exception>
    public CudaKernel GetKernel(string entryName, int parameterCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(parameterCount);
        return GetKernel(entryName, (int?)parameterCount);
    }

    private unsafe CudaKernel GetKernel(string entryName, int? parameterCount)
    {
        ArgumentException.ThrowIfNullOrEmpty(entryName);
        IntPtr mod = Handle;
        byte[] name = new byte[Encoding.UTF8.GetByteCount(entryName) + 1];
        Encoding.UTF8.GetBytes(entryName, name);
        Context.MakeCurrent();
        IntPtr function;
        fixed (byte* pName = name)
            CuDriver.cuModuleGetFunction(&function, mod, pName).Check(nameof(CuDriver.cuModuleGetFunction), $"entry '{entryName}' in module '{ModuleName}'");
        GC.KeepAlive(this);
        return new CudaKernel(this, function, entryName, parameterCount);
    }

    public void Dispose() => _handle.Dispose();

    private static string DecodeLog(byte[] buffer, uint filled)
    {
        int n = (int)Math.Min(filled, (uint)buffer.Length);
        int nul = Array.IndexOf(buffer, (byte)0, 0, n == 0 ? buffer.Length : n);
        if (nul >= 0)
            n = nul;
        return Encoding.UTF8.GetString(buffer, 0, n).TrimEnd();
    }
}
