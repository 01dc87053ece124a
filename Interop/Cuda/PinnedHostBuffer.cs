using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>
/// Page-locked host memory (<c>cuMemHostAlloc</c>, portable): the staging buffer of asynchronous host→device copies,
/// which the GPU reads by DMA while the host goes on. The caller must not rewrite a region until the copy that reads
/// it has completed (record an event after the copy and wait for it). Freed by <see cref="Dispose"/>
/// (<c>cuMemFreeHost</c>).
/// </summary>
public sealed unsafe class PinnedHostBuffer : IDisposable
{
    private readonly SafePinnedHostMemoryHandle _memory;

    /// <exception cref="ArgumentOutOfRangeException"><paramref name="bytes"/> is not in [1, 2^31 − 1] (one span).</exception>
    /// <exception cref="CudaException">The allocation failed (out of pinnable memory).</exception>
    public PinnedHostBuffer(CudaContext context, int bytes, bool writeCombined = false)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        context.MakeCurrent();
        void* p;
        uint flags = CuDriver.CU_MEMHOSTALLOC_PORTABLE | (writeCombined ? CuDriver.CU_MEMHOSTALLOC_WRITECOMBINED : 0);
        CuDriver.cuMemHostAlloc(&p, (nuint)bytes, flags).Check(nameof(CuDriver.cuMemHostAlloc), $"{bytes} bytes");
        _memory = new SafePinnedHostMemoryHandle((IntPtr)p, context.SafeHandle);
        Context = context;
        SizeInBytes = bytes;
    }

    public CudaContext Context { get; }

    /// <summary>Size in bytes.</summary>
    public int SizeInBytes { get; }

    /// <summary>The whole buffer (valid until disposal).</summary>
    /// <exception cref="ObjectDisposedException">Disposed.</exception>
    public Span<byte> Span
    {
        get
        {
            ObjectDisposedException.ThrowIf(_memory.IsClosed, this);
            return new Span<byte>((void*)_memory.DangerousGetHandle(), SizeInBytes);
        }
    }

    public void Dispose() => _memory.Dispose();
}
