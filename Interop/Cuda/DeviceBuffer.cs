using System.Runtime.CompilerServices;
using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>
/// <see cref="Length"/> elements of <typeparamref name="T"/> in device memory (cuMemAlloc_v2; contents undefined
/// after allocation). Lengths and offsets are in elements, sizes in bytes. Arguments are checked before any driver
/// call: bad lengths/offsets → <see cref="ArgumentOutOfRangeException"/>/<see cref="ArgumentException"/>, use after
/// Dispose → <see cref="ObjectDisposedException"/>; driver failures → <see cref="CudaException"/>.
/// Synchronous copies run on the legacy default stream (ordered after work on every <see cref="CudaStream"/>);
/// the async ones are ordered on the given stream only.
/// <para>A buffer either owns its allocation (the constructor) or is a non-owning view of memory allocated elsewhere
/// (<see cref="Wrap"/>: another CUDA library's tensor, a raw <c>cuMemAlloc</c>); every MoeNative entry point takes
/// both alike, and disposing a view frees nothing.</para>
/// </summary>
public sealed class DeviceBuffer<T> : IDisposable where T : unmanaged
{
    private readonly SafeDeviceMemoryHandle? _memory; // null when Length == 0 or for a view
    private readonly ulong _view;                     // the viewed address (views only)
    private readonly bool _isView;
    private bool _disposed;

    /// <summary>Allocates <paramref name="length"/> elements; length 0 allocates nothing (pointer 0).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative or its byte size overflows.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="ctx"/> is null.</exception>
    /// <exception cref="CudaException">Out of memory or another allocation failure.</exception>
    public unsafe DeviceBuffer(CudaContext ctx, long length)
    {
        long bytes = CheckedByteSize(length);
        ArgumentNullException.ThrowIfNull(ctx);
        Context = ctx;
        Length = length;
        SizeInBytes = bytes;
        if (length == 0)
            return;
        ctx.MakeCurrent();
        ulong ptr;
        CuDriver.cuMemAlloc(&ptr, (nuint)bytes).Check(nameof(CuDriver.cuMemAlloc), $"{bytes} bytes");
        _memory = new SafeDeviceMemoryHandle(ptr, ctx.SafeHandle);
    }

    private DeviceBuffer(CudaContext ctx, ulong pointer, long length)
    {
        Context = ctx;
        Length = length;
        SizeInBytes = length * ElementSize;
        _view = pointer;
        _isView = true;
    }

    /// <summary>
    /// A non-owning view of <paramref name="length"/> elements at <paramref name="devicePointer"/> in
    /// <paramref name="ctx"/>: memory allocated by other code, which keeps it alive and frees it (after this view's
    /// last use). Checked now: the range must lie inside one allocation of the context (<c>cuMemGetAddressRange</c>).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative length or an overflowing byte size.</exception>
    /// <exception cref="ArgumentException">Pointer 0 for a non-empty view, or a range that is not inside one device
    /// allocation of <paramref name="ctx"/> (the message gives the allocation found, if any).</exception>
    public static unsafe DeviceBuffer<T> Wrap(CudaContext ctx, ulong devicePointer, long length)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        long bytes = CheckedByteSize(length);
        if (length == 0) return new DeviceBuffer<T>(ctx, 0, 0);
        if (devicePointer == 0) throw new ArgumentException($"A view of {length} elements needs a device pointer, got 0.", nameof(devicePointer));
        ctx.MakeCurrent();
        ulong start;
        nuint size;
        CUresult r = CuDriver.cuMemGetAddressRange(&start, &size, devicePointer);
        if (r != CUresult.CUDA_SUCCESS)
            throw new ArgumentException($"0x{devicePointer:x} is not device memory of {ctx} ({r}).", nameof(devicePointer));
        if (devicePointer - start + (ulong)bytes > (ulong)size)
            throw new ArgumentException(
                $"A view of {length} x {ElementSize} bytes at 0x{devicePointer:x} runs past its allocation [0x{start:x}, +{size} bytes).", nameof(length));
        return new DeviceBuffer<T>(ctx, devicePointer, length);
    }

    /// <summary>False for a view made by <see cref="Wrap"/> (disposing it frees nothing).</summary>
    public bool OwnsMemory => !_isView;

    /// <summary>Allocates a buffer of <paramref name="source"/>'s length and copies it in (synchronous).</summary>
    public static DeviceBuffer<T> FromHost(CudaContext ctx, ReadOnlySpan<T> source)
    {
        var buffer = new DeviceBuffer<T>(ctx, source.Length);
        try
        {
            buffer.CopyFromHost(source);
            return buffer;
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    public CudaContext Context { get; }
    /// <summary>Number of elements.</summary>
    public long Length { get; }
    /// <summary>Length · sizeof(T).</summary>
    public long SizeInBytes { get; }
    public static int ElementSize => Unsafe.SizeOf<T>();

    /// <summary>CUdeviceptr of element 0 (0 for an empty buffer).</summary>
    /// <exception cref="ObjectDisposedException">Disposed.</exception>
    public ulong DevicePointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _memory?.DevicePointer ?? _view;
        }
    }

    /// <summary>CUdeviceptr of element <paramref name="elementOffset"/>; 0 ≤ offset ≤ Length (one past the end
    /// is allowed for empty slices).</summary>
    public ulong PointerAt(long elementOffset)
    {
        CheckRange(Length, elementOffset, 0, nameof(elementOffset));
        return DevicePointer + (ulong)elementOffset * (ulong)ElementSize;
    }

    /// <summary>Copies <paramref name="source"/> to elements [dstOffset, dstOffset + source.Length); synchronous.</summary>
    public unsafe void CopyFromHost(ReadOnlySpan<T> source, long dstOffset = 0)
    {
        CheckRange(Length, dstOffset, source.Length, nameof(dstOffset));
        ulong dst = DevicePointer;
        if (source.IsEmpty)
            return;
        Context.MakeCurrent();
        fixed (T* src = source)
            CuDriver.cuMemcpyHtoD(dst + Bytes(dstOffset), src, (nuint)Bytes(source.Length)).Check(nameof(CuDriver.cuMemcpyHtoD));
        GC.KeepAlive(this);
    }

    /// <summary>Copies elements [srcOffset, srcOffset + destination.Length) to <paramref name="destination"/>;
    /// synchronous (waits for earlier work on blocking streams).</summary>
    public unsafe void CopyToHost(Span<T> destination, long srcOffset = 0)
    {
        CheckRange(Length, srcOffset, destination.Length, nameof(srcOffset));
        ulong src = DevicePointer;
        if (destination.IsEmpty)
            return;
        Context.MakeCurrent();
        fixed (T* dst = destination)
            CuDriver.cuMemcpyDtoH(dst, src + Bytes(srcOffset), (nuint)Bytes(destination.Length)).Check(nameof(CuDriver.cuMemcpyDtoH));
        GC.KeepAlive(this);
    }

    /// <summary>The whole buffer as a new array (synchronous).</summary>
    public T[] ToArray()
    {
        var result = new T[checked((int)Length)];
        CopyToHost(result);
        return result;
    }

    /// <summary>Enqueues a host→device copy on <paramref name="stream"/>. The caller keeps the host memory alive
    /// and unchanged until the stream has synchronised (for pageable memory the driver stages it before
    /// returning, for pinned memory it reads it later).</summary>
    public unsafe void CopyFromHostAsync(ReadOnlySpan<T> source, CudaStream stream, long dstOffset = 0)
    {
        CheckRange(Length, dstOffset, source.Length, nameof(dstOffset));
        ArgumentNullException.ThrowIfNull(stream);
        ulong dst = DevicePointer;
        IntPtr s = stream.Handle;
        if (source.IsEmpty)
            return;
        Context.MakeCurrent();
        fixed (T* src = source)
            CuDriver.cuMemcpyHtoDAsync(dst + Bytes(dstOffset), src, (nuint)Bytes(source.Length), s).Check(nameof(CuDriver.cuMemcpyHtoDAsync));
        GC.KeepAlive(this);
        GC.KeepAlive(stream);
    }

    /// <summary>Enqueues a device→host copy on <paramref name="stream"/>. The caller keeps the host memory alive
    /// and does not read it until the stream has synchronised.</summary>
    public unsafe void CopyToHostAsync(Span<T> destination, CudaStream stream, long srcOffset = 0)
    {
        CheckRange(Length, srcOffset, destination.Length, nameof(srcOffset));
        ArgumentNullException.ThrowIfNull(stream);
        ulong src = DevicePointer;
        IntPtr s = stream.Handle;
        if (destination.IsEmpty)
            return;
        Context.MakeCurrent();
        fixed (T* dst = destination)
            CuDriver.cuMemcpyDtoHAsync(dst, src + Bytes(srcOffset), (nuint)Bytes(destination.Length), s).Check(nameof(CuDriver.cuMemcpyDtoHAsync));
        GC.KeepAlive(this);
        GC.KeepAlive(stream);
    }

    /// <summary>Copies all of <paramref name="source"/> into the start of this buffer, on <paramref name="stream"/>
    /// when given (asynchronous) or synchronously.</summary>
    /// <exception cref="ArgumentException"><paramref name="source"/> is longer than this buffer.</exception>
    public void CopyFrom(DeviceBuffer<T> source, CudaStream? stream = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.Length > Length)
            throw new ArgumentException($"Source has {source.Length} elements; this buffer holds {Length}.", nameof(source));
        ulong dst = DevicePointer, src = source.DevicePointer;
        IntPtr s = stream?.Handle ?? IntPtr.Zero;
        if (source.Length == 0)
            return;
        Context.MakeCurrent();
        nuint bytes = (nuint)source.SizeInBytes;
        if (stream is null)
            CuDriver.cuMemcpyDtoD(dst, src, bytes).Check(nameof(CuDriver.cuMemcpyDtoD));
        else
            CuDriver.cuMemcpyDtoDAsync(dst, src, bytes, s).Check(nameof(CuDriver.cuMemcpyDtoDAsync));
        GC.KeepAlive(this);
        GC.KeepAlive(source);
        GC.KeepAlive(stream);
    }

    /// <summary>Sets every byte to <paramref name="value"/> (cuMemsetD8), on <paramref name="stream"/> when given.
    /// 0xFF makes every bf16/fp16/fp32 element a NaN and every int32 -1: the poison before a kernel writes.
    /// Without a stream it runs on the legacy default stream: ordered before later work on every blocking
    /// <see cref="CudaStream"/> and before later synchronous copies, but it may return before it is done.</summary>
    public void FillBytes(byte value, CudaStream? stream = null)
    {
        ulong dst = DevicePointer;
        IntPtr s = stream?.Handle ?? IntPtr.Zero;
        if (Length == 0)
            return;
        Context.MakeCurrent();
        if (stream is null)
            CuDriver.cuMemsetD8(dst, value, (nuint)SizeInBytes).Check(nameof(CuDriver.cuMemsetD8));
        else
            CuDriver.cuMemsetD8Async(dst, value, (nuint)SizeInBytes, s).Check(nameof(CuDriver.cuMemsetD8Async));
        GC.KeepAlive(this);
        GC.KeepAlive(stream);
    }

    /// <summary>Frees the memory (the context stays retained until then); a view only becomes unusable.</summary>
    public void Dispose()
    {
        _disposed = true;
        _memory?.Dispose();
    }

    public override string ToString() => $"DeviceBuffer<{typeof(T).Name}>[{Length}]";

    private static ulong Bytes(long elements) => (ulong)elements * (ulong)ElementSize;

    /// <summary>Byte size of <paramref name="length"/> elements.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative, or the byte size overflows a long.</exception>
    internal static long CheckedByteSize(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (length > long.MaxValue / ElementSize)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"{length} elements of {ElementSize} bytes overflow a 64-bit byte count.");
        return length * ElementSize;
    }

    /// <summary>Checks that [offset, offset + count) lies within [0, length).</summary>
    /// <exception cref="ArgumentOutOfRangeException">It does not; names <paramref name="offsetName"/> and the range.</exception>
    internal static void CheckRange(long length, long offset, long count, string offsetName)
    {
        if (offset < 0 || offset > length)
            throw new ArgumentOutOfRangeException(offsetName, offset, $"Offset must be in [0, {length}].");
        if (count < 0 || count > length - offset)
            throw new ArgumentOutOfRangeException(offsetName, offset,
                $"{count} elements starting at offset {offset} do not fit in a buffer of {length} elements.");
    }
}
