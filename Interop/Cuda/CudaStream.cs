using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>
/// A blocking CUDA stream (CU_STREAM_DEFAULT): work on it is ordered with the legacy default stream, which the
/// synchronous <see cref="DeviceBuffer{T}"/> copies use, so a synchronous copy after a launch sees its result.
/// <para>A stream created by other code (a CUstream of TorchSharp, an inference engine) is used through
/// <see cref="Wrap"/>: a non-owning view, so MoeNative's work is ordered with theirs; disposing it destroys nothing.</para>
/// </summary>
public sealed class CudaStream : IDisposable
{
    private readonly SafeCudaStreamHandle? _handle; // null for a wrapped stream
    private readonly IntPtr _wrapped;
    private bool _wrappedDisposed;

    /// <exception cref="ArgumentNullException"><paramref name="ctx"/> is null.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="ctx"/> is disposed.</exception>
    /// <exception cref="CudaException">cuStreamCreate failed.</exception>
    public unsafe CudaStream(CudaContext ctx)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ctx.MakeCurrent();
        IntPtr stream;
        CuDriver.cuStreamCreate(&stream, CuDriver.CU_STREAM_DEFAULT).Check(nameof(CuDriver.cuStreamCreate));
        _handle = new SafeCudaStreamHandle(stream, ctx.SafeHandle);
        Context = ctx;
    }

    private CudaStream(CudaContext ctx, IntPtr wrapped)
    {
        Context = ctx;
        _wrapped = wrapped;
    }

    /// <summary>
    /// A non-owning view of <paramref name="stream"/>, a CUstream of <paramref name="ctx"/> created elsewhere (0 is the
    /// legacy default stream, 2 the per-thread default stream). Its owner keeps it alive while MoeNative uses it.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="ctx"/> is null.</exception>
    /// <exception cref="CudaException">The driver does not know the stream (cuStreamQuery fails other than NOT_READY).</exception>
    public static CudaStream Wrap(CudaContext ctx, IntPtr stream)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ctx.MakeCurrent();
        CUresult r = CuDriver.cuStreamQuery(stream);
        if (r != CUresult.CUDA_ERROR_NOT_READY) r.Check(nameof(CuDriver.cuStreamQuery), $"stream 0x{stream:x}");
        return new CudaStream(ctx, stream);
    }

    /// <summary>False for a stream made by <see cref="Wrap"/>.</summary>
    public bool OwnsStream => _handle is not null;

    public CudaContext Context { get; }

    /// <summary>The CUstream.</summary>
    /// <exception cref="ObjectDisposedException">Disposed.</exception>
    public IntPtr Handle
    {
        get
        {
            if (_handle is null)
            {
                ObjectDisposedException.ThrowIf(_wrappedDisposed, this);
                return _wrapped;
            }
            ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
            return _handle.DangerousGetHandle();
        }
    }

    /// <summary>Blocks until all work on the stream is done; asynchronous errors of that work surface here.</summary>
    public void Synchronize()
    {
        IntPtr h = Handle;
        Context.MakeCurrent();
        CuDriver.cuStreamSynchronize(h).Check(nameof(CuDriver.cuStreamSynchronize));
        GC.KeepAlive(this);
    }

    /// <summary>Makes later work on this stream wait for <paramref name="e"/> (no host block).</summary>
    public void WaitEvent(CudaEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        IntPtr h = Handle;
        Context.MakeCurrent();
        CuDriver.cuStreamWaitEvent(h, e.Handle, 0).Check(nameof(CuDriver.cuStreamWaitEvent));
        GC.KeepAlive(this);
        GC.KeepAlive(e);
    }

    public void Dispose()
    {
        if (_handle is null) _wrappedDisposed = true;
        else _handle.Dispose();
    }
}
