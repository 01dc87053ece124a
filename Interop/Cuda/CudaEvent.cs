using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>A CUDA event with timing enabled.</summary>
public sealed class CudaEvent : IDisposable
{
    private readonly SafeCudaEventHandle _handle;

    /// <exception cref="CudaException">cuEventCreate failed.</exception>
    public unsafe CudaEvent(CudaContext ctx)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ctx.MakeCurrent();
        IntPtr e;
        CuDriver.cuEventCreate(&e, CuDriver.CU_EVENT_DEFAULT).Check(nameof(CuDriver.cuEventCreate));
        _handle = new SafeCudaEventHandle(e, ctx.SafeHandle);
        Context = ctx;
    }

    public CudaContext Context { get; }

    /// <summary>The CUevent.</summary>
    /// <exception cref="ObjectDisposedException">Disposed.</exception>
    public IntPtr Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
            return _handle.DangerousGetHandle();
        }
    }

    /// <summary>Records the event at the current end of <paramref name="stream"/>'s work.</summary>
    public void Record(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        IntPtr h = Handle;
        Context.MakeCurrent();
        CuDriver.cuEventRecord(h, stream.Handle).Check(nameof(CuDriver.cuEventRecord));
        GC.KeepAlive(this);
        GC.KeepAlive(stream);
    }

    /// <summary>Blocks until the recorded work is done.</summary>
    public void Synchronize()
    {
        IntPtr h = Handle;
        Context.MakeCurrent();
        CuDriver.cuEventSynchronize(h).Check(nameof(CuDriver.cuEventSynchronize));
        GC.KeepAlive(this);
    }

    /// <summary>True when the recorded work is done (cuEventQuery; CUDA_ERROR_NOT_READY → false).</summary>
    public bool IsComplete
    {
        get
        {
            IntPtr h = Handle;
            Context.MakeCurrent();
            CUresult r = CuDriver.cuEventQuery(h);
            GC.KeepAlive(this);
            if (r == CUresult.CUDA_ERROR_NOT_READY)
                return false;
            r.Check(nameof(CuDriver.cuEventQuery));
            return true;
        }
    }

    /// <summary>Milliseconds between two recorded events (about 0.5 µs resolution). Waits for
    /// <paramref name="end"/> to complete first (cuEventSynchronize), so it may block.</summary>
    /// <exception cref="CudaException">An event was never recorded, or they belong to different contexts.</exception>
    public static unsafe float ElapsedMilliseconds(CudaEvent start, CudaEvent end)
    {
        ArgumentNullException.ThrowIfNull(start);
        ArgumentNullException.ThrowIfNull(end);
        end.Synchronize();
        float ms;
        CuDriver.cuEventElapsedTime(&ms, start.Handle, end.Handle).Check("cuEventElapsedTime");
        GC.KeepAlive(start);
        GC.KeepAlive(end);
        return ms;
    }

    public void Dispose() => _handle.Dispose();
}
