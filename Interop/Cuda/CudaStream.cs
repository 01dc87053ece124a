using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>
/// A blocking CUDA stream (CU_STREAM_DEFAULT): work on it is ordered with the legacy default stream, which the
/// synchronous <see cref="DeviceBuffer{T}"/> copies use, so a synchronous copy after a launch sees its result.
/// </summary>
public sealed class CudaStream : IDisposable
{
    private readonly SafeCudaStreamHandle _handle;

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

    public CudaContext Context { get; }

    /// <summary>The CUstream.</summary>
    /// <exception cref="ObjectDisposedException">Disposed.</exception>
    public IntPtr Handle
    {
        get
        {
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

    public void Dispose() => _handle.Dispose();
}
