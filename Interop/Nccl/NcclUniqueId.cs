using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>
/// An <c>ncclUniqueId</c> (128 opaque bytes): made once by one rank (<see cref="NcclCommunicator.CreateUniqueId"/>)
/// and given to every rank of the communicator, e.g. through a file or the launcher (<see cref="ToBytes"/> /
/// <see cref="FromBytes"/>).
/// </summary>
public sealed class NcclUniqueId
{
    /// <summary>NCCL_UNIQUE_ID_BYTES.</summary>
    public const int Length = NcclUniqueIdNative.Bytes;

    private readonly byte[] _bytes;

    private NcclUniqueId(byte[] bytes) => _bytes = bytes;

    /// <summary>An id from its 128 bytes (as <see cref="ToBytes"/> gave them on the rank that made it).</summary>
    /// <exception cref="ArgumentException">Not exactly <see cref="Length"/> bytes.</exception>
    public static NcclUniqueId FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Length)
            throw new ArgumentException($"An ncclUniqueId has {Length} bytes; got {bytes.Length}.", nameof(bytes));
        return new NcclUniqueId(bytes.ToArray());
    }

    /// <summary>A copy of the 128 bytes.</summary>
    public byte[] ToBytes() => (byte[])_bytes.Clone();

    internal unsafe NcclUniqueIdNative ToNative()
    {
        NcclUniqueIdNative id = default;
        for (int i = 0; i < Length; i++) id.Internal[i] = _bytes[i];
        return id;
    }

    internal static unsafe NcclUniqueId FromNative(in NcclUniqueIdNative id)
    {
        var bytes = new byte[Length];
        fixed (byte* p = id.Internal)
            new ReadOnlySpan<byte>(p, Length).CopyTo(bytes);
        return new NcclUniqueId(bytes);
    }
}
