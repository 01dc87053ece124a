namespace MoeNative.Interop;

/// <summary>
/// A device pointer plus, when known, the number of bytes behind it: what the kernel wrappers take for every tensor
/// argument. Built from a <see cref="DeviceBuffer{T}"/> (implicitly for the element types the kernels use, or with
/// <see cref="DeviceRangeExtensions.AsRange{T}(DeviceBuffer{T})"/> / <c>Slice</c>), the wrapper checks the size
/// against the shape before any launch; a raw <c>ulong</c> converts implicitly with an unknown size (only null is
/// checked). Pointer 0 means "absent" where a parameter is optional (rowOfSlot, addend).
/// </summary>
public readonly record struct DeviceRange(ulong Pointer, long Bytes)
{
    /// <summary><see cref="Bytes"/> of a range whose size is unknown (built from a raw pointer).</summary>
    public const long UnknownSize = -1;

    /// <summary>The absent range (pointer 0).</summary>
    public static DeviceRange Null => default;

    public bool IsNull => Pointer == 0;

    /// <summary>True when <paramref name="bytes"/> fit: nothing is needed (0), or the pointer is set and the size is
    /// unknown or at least <paramref name="bytes"/>.</summary>
    public bool CanHold(long bytes) => bytes == 0 || (!IsNull && (Bytes == UnknownSize || Bytes >= bytes));

    public static implicit operator DeviceRange(ulong pointer) => new(pointer, UnknownSize);
    public static implicit operator DeviceRange(DeviceBuffer<float> b) => b.AsRange();
    public static implicit operator DeviceRange(DeviceBuffer<int> b) => b.AsRange();
    public static implicit operator DeviceRange(DeviceBuffer<uint> b) => b.AsRange();
    public static implicit operator DeviceRange(DeviceBuffer<Half> b) => b.AsRange();
    public static implicit operator DeviceRange(DeviceBuffer<BFloat16> b) => b.AsRange();
    public static implicit operator DeviceRange(DeviceBuffer<ushort> b) => b.AsRange();
    public static implicit operator DeviceRange(DeviceBuffer<byte> b) => b.AsRange();

    public override string ToString() => Bytes < 0 ? $"0x{Pointer:x} (size unknown)" : $"0x{Pointer:x} ({Bytes} bytes)";
}

/// <summary>Views of device buffers as <see cref="DeviceRange"/>s.</summary>
public static class DeviceRangeExtensions
{
    /// <summary>The whole buffer.</summary>
    public static DeviceRange AsRange<T>(this DeviceBuffer<T> buffer) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(buffer);
        return new DeviceRange(buffer.Length == 0 ? 0 : buffer.DevicePointer, buffer.SizeInBytes);
    }

    /// <summary>Elements [<paramref name="offset"/>, <paramref name="offset"/> + <paramref name="length"/>) of the buffer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The slice does not fit in the buffer.</exception>
    public static DeviceRange Slice<T>(this DeviceBuffer<T> buffer, long offset, long length) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(buffer);
        if (offset < 0 || length < 0 || offset > buffer.Length - length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"Slice [{offset}, {offset}+{length}) does not fit in {buffer}.");
        return new DeviceRange(length == 0 ? 0 : buffer.PointerAt(offset), length * DeviceBuffer<T>.ElementSize);
    }
}
