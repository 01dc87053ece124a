using MoeNative.Interop;

namespace MoeNative.Blocks;

/// <summary>One allocated workspace arena: a device allocation laid out by a <see cref="BlockWorkspaceLayout"/>.</summary>
internal sealed class BlockWorkspace : IDisposable
{
    public BlockWorkspace(CudaContext context, BlockWorkspaceLayout layout)
    {
        Layout = layout;
        // NOTE: one byte minimum so DevicePointer is valid even for an all-empty layout.
        Arena = new DeviceBuffer<byte>(context, Math.Max(1, layout.TotalBytes));
    }

    public BlockWorkspaceLayout Layout { get; }

    /// <summary>The whole arena. // [TotalBytes] bytes</summary>
    public DeviceBuffer<byte> Arena { get; }

    /// <summary>Device address of <paramref name="buffer"/>'s slice.</summary>
    public ulong Ptr(BlockBuffer buffer) => Arena.DevicePointer + (ulong)Layout[buffer].Offset;

    /// <summary><paramref name="buffer"/>'s slice with its byte size, so the kernel wrappers check it against the shape.</summary>
    public DeviceRange Range(BlockBuffer buffer)
    {
        WorkspaceSlice slice = Layout[buffer];
        return new DeviceRange(Arena.DevicePointer + (ulong)slice.Offset, slice.Bytes);
    }

    /// <summary>Byte offset of <paramref name="buffer"/>'s slice in <see cref="Arena"/>.</summary>
    public long Offset(BlockBuffer buffer) => Layout[buffer].Offset;

    /// <summary>Fills every slice with 0xFF (NaN in every float dtype, -1 in int32): unwritten elements show up in tests.</summary>
    public void Poison(CudaStream stream) => Arena.FillBytes(0xFF, stream);

    public void Dispose() => Arena.Dispose();
}
