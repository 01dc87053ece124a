using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Blocks;

/// <summary>
/// Checkpoint bytes → device: two pinned staging slots (<see cref="PinnedHostBuffer"/>), each followed by an event
/// recorded after the copy that reads it, so the host refills a slot only once its copy is done; asynchronous
/// host→device copies on an own stream; when the file's dtype is not the destination's, the chunk goes to a device
/// scratch slot and the convert kernel (<see cref="DtypeConvertKernels"/>) writes the destination. Host memory:
/// 2 × <see cref="ChunkBytes"/> pinned; device: 2 × <see cref="ChunkBytes"/> scratch, only when converting.
/// </summary>
internal sealed class DeviceStagingTarget : IStagingTarget, IDisposable
{
    private readonly CudaContext _context;
    private readonly CudaStream _stream;
    private readonly PinnedHostBuffer[] _staging = new PinnedHostBuffer[2];
    private readonly CudaEvent[] _done = new CudaEvent[2];
    private readonly bool[] _inFlight = new bool[2];
    private readonly DeviceBuffer<byte>?[] _scratch = new DeviceBuffer<byte>?[2];
    private DeviceBuffer<byte>[] _destinations = [];

    /// <param name="context">Where the destinations live.</param>
    /// <param name="chunkBytes">Bytes per slot, a positive multiple of 16.</param>
    /// <param name="destinationDType">The dtype every destination stores.</param>
    public DeviceStagingTarget(CudaContext context, int chunkBytes, ScalarType destinationDType)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (chunkBytes <= 0 || chunkBytes % 16 != 0)
            throw new ArgumentOutOfRangeException(nameof(chunkBytes), chunkBytes, "The staging chunk must be a positive multiple of 16 bytes.");
        _ = destinationDType.SizeOf();
        _context = context;
        ChunkBytes = chunkBytes;
        DestinationDType = destinationDType;
        try
        {
            _stream = new CudaStream(context);
            for (int i = 0; i < 2; i++)
            {
                _staging[i] = new PinnedHostBuffer(context, chunkBytes);
                _done[i] = new CudaEvent(context);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public int ChunkBytes { get; }

    public ScalarType DestinationDType { get; }

    /// <summary>Pinned host bytes held (the bound on host memory of a load).</summary>
    public long PinnedBytes => 2L * ChunkBytes;

    /// <summary>The buffers destination indices refer to (index = <see cref="Reference.IO.MoeWeightPart"/>); all
    /// earlier transfers must be complete.</summary>
    public void SetDestinations(params DeviceBuffer<byte>[] destinations) => _destinations = destinations;

    public Span<byte> Acquire(int slot)
    {
        if (_inFlight[slot])
        {
            _done[slot].Synchronize();
            _inFlight[slot] = false;
        }
        return _staging[slot].Span[..ChunkBytes];
    }

    public void Submit(int slot, int byteCount, ScalarType sourceDType, int destination, long destinationElementOffset)
    {
        DeviceBuffer<byte> dst = _destinations[destination];
        int sourceSize = sourceDType.SizeOf(), destSize = DestinationDType.SizeOf();
        long count = byteCount / sourceSize;
        long dstByte = checked(destinationElementOffset * destSize);
        ReadOnlySpan<byte> host = _staging[slot].Span[..byteCount];
        if (sourceDType == DestinationDType)
        {
            dst.CopyFromHostAsync(host, _stream, dstByte);
        }
        else
        {
            DeviceBuffer<byte> scratch = _scratch[slot] ??= new DeviceBuffer<byte>(_context, ChunkBytes);
            scratch.CopyFromHostAsync(host, _stream);
            DtypeConvertKernels.For(_context).Convert(_stream, sourceDType, DestinationDType,
                scratch.Slice(0, byteCount), dst.Slice(dstByte, count * destSize), count);
        }
        _done[slot].Record(_stream);
        _inFlight[slot] = true;
    }

    public void Complete()
    {
        _stream.Synchronize();
        _inFlight[0] = _inFlight[1] = false;
    }

    public void Dispose()
    {
        // NOTE: pinned memory may still be read by an in-flight copy; wait before freeing it.
        try { _stream?.Synchronize(); }
        catch (CudaException) { /* the error was (or will be) reported by Complete; free anyway */ }
        for (int i = 0; i < 2; i++)
        {
            _staging[i]?.Dispose();
            _done[i]?.Dispose();
            _scratch[i]?.Dispose();
        }
        _stream?.Dispose();
    }
}
