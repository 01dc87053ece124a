using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>Work captured from a stream (cuStreamBeginCapture_v2 … cuStreamEndCapture) and instantiated once;
/// <see cref="Launch"/> replays it. Buffers and arguments are baked in: replays read and write the same memory.</summary>
public sealed class CudaGraph : IDisposable
{
    private readonly SafeCudaGraphHandle _graph;
    private readonly SafeCudaGraphExecHandle _exec;

    private CudaGraph(CudaContext ctx, SafeCudaGraphHandle graph, SafeCudaGraphExecHandle exec)
    {
        Context = ctx;
        _graph = graph;
        _exec = exec;
    }

    public CudaContext Context { get; }

    /// <summary>Captures what <paramref name="work"/> enqueues on <paramref name="stream"/> (thread-local capture
    /// mode: the calling thread must not make unsafe calls such as synchronous copies while capturing) and
    /// instantiates it. Nothing runs during capture.</summary>
    /// <exception cref="CudaException">Capture or instantiation failed (e.g. the work synchronised,
    /// CUDA_ERROR_STREAM_CAPTURE_INVALIDATED / _UNSUPPORTED).</exception>
    /// <remarks>If <paramref name="work"/> throws, the capture is ended and discarded and the exception rethrown.</remarks>
    public static unsafe CudaGraph Capture(CudaStream stream, Action<CudaStream> work)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(work);
        CudaContext ctx = stream.Context;
        IntPtr s = stream.Handle;
        ctx.MakeCurrent();
        CuDriver.cuStreamBeginCapture(s, CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .Check(nameof(CuDriver.cuStreamBeginCapture));
        IntPtr graph = IntPtr.Zero;
        try
        {
            work(stream);
        }
        catch
        {
            ctx.MakeCurrent();
            if (CuDriver.cuStreamEndCapture(s, &graph) == CUresult.CUDA_SUCCESS && graph != IntPtr.Zero)
                CuDriver.cuGraphDestroy(graph);
            throw;
        }
        ctx.MakeCurrent();
        CuDriver.cuStreamEndCapture(s, &graph).Check(nameof(CuDriver.cuStreamEndCapture));
        var graphHandle = new SafeCudaGraphHandle(graph, ctx.SafeHandle);
        try
        {
            IntPtr exec;
            CuDriver.cuGraphInstantiateWithFlags(&exec, graph, 0).Check(nameof(CuDriver.cuGraphInstantiateWithFlags));
            return new CudaGraph(ctx, graphHandle, new SafeCudaGraphExecHandle(exec, ctx.SafeHandle));
        }
        catch
        {
            graphHandle.Dispose();
            throw;
        }
        finally
        {
            GC.KeepAlive(stream);
        }
    }

    /// <summary>Enqueues one replay on <paramref name="stream"/>.</summary>
    public void Launch(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ObjectDisposedException.ThrowIf(_exec.IsClosed, this);
        IntPtr s = stream.Handle;
        Context.MakeCurrent();
        CuDriver.cuGraphLaunch(_exec.DangerousGetHandle(), s).Check(nameof(CuDriver.cuGraphLaunch));
        GC.KeepAlive(this);
        GC.KeepAlive(stream);
    }

    public void Dispose()
    {
        _exec.Dispose();
        _graph.Dispose();
    }
}
