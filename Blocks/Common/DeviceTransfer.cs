using System.Buffers;
using MoeNative.Interop;

namespace MoeNative.Blocks;

/// <summary>
/// Synchronous host↔device copies of float values stored on the device in a storage dtype, converted on the host
/// in chunks (so a multi-GB weight never needs a second full-size host array).
/// </summary>
internal static class DeviceTransfer
{
    private const int ChunkElements = 1 << 24; // 16 Mi elements: 64 MB of fp32 staging at most

    /// <summary>A new device buffer holding <paramref name="values"/> rounded to <paramref name="dtype"/>.</summary>
    public static DeviceBuffer<byte> UploadNew(CudaContext context, ReadOnlySpan<float> values, ScalarType dtype)
    {
        var buffer = new DeviceBuffer<byte>(context, (long)values.Length * dtype.SizeOf());
        try
        {
            Upload(buffer, 0, values, dtype);
            return buffer;
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    /// <summary>Writes <paramref name="values"/> rounded to <paramref name="dtype"/> at byte <paramref name="byteOffset"/>.</summary>
    public static void Upload(DeviceBuffer<byte> buffer, long byteOffset, ReadOnlySpan<float> values, ScalarType dtype)
    {
        int s = dtype.SizeOf();
        if (values.IsEmpty) return;
        byte[] staging = ArrayPool<byte>.Shared.Rent(Math.Min(values.Length, ChunkElements) * s);
        try
        {
            for (int start = 0; start < values.Length; start += ChunkElements)
            {
                int count = Math.Min(ChunkElements, values.Length - start);
                Span<byte> bytes = staging.AsSpan(0, count * s);
                StorageConvert.ToStorageParallel(values.Slice(start, count), dtype, bytes);
                buffer.CopyFromHost(bytes, byteOffset + (long)start * s);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(staging);
        }
    }

    /// <summary>Reads <c>destination.Length</c> values of <paramref name="dtype"/> from byte <paramref name="byteOffset"/>.</summary>
    public static void Download(DeviceBuffer<byte> buffer, long byteOffset, Span<float> destination, ScalarType dtype)
    {
        int s = dtype.SizeOf();
        if (destination.IsEmpty) return;
        byte[] staging = ArrayPool<byte>.Shared.Rent(Math.Min(destination.Length, ChunkElements) * s);
        try
        {
            for (int start = 0; start < destination.Length; start += ChunkElements)
            {
                int count = Math.Min(ChunkElements, destination.Length - start);
                Span<byte> bytes = staging.AsSpan(0, count * s);
                buffer.CopyToHost(bytes, byteOffset + (long)start * s);
                StorageConvert.FromStorageParallel(bytes, dtype, destination.Slice(start, count));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(staging);
        }
    }

    /// <summary>Reads <paramref name="count"/> values of <paramref name="dtype"/> from byte <paramref name="byteOffset"/>.</summary>
    public static float[] Download(DeviceBuffer<byte> buffer, long byteOffset, long count, ScalarType dtype)
    {
        var result = new float[count];
        Download(buffer, byteOffset, result, dtype);
        return result;
    }

    /// <summary>Reads <paramref name="count"/> int32 values from byte <paramref name="byteOffset"/>.</summary>
    public static int[] DownloadInt32(DeviceBuffer<byte> buffer, long byteOffset, int count)
    {
        var result = new int[count];
        buffer.CopyToHost(System.Runtime.InteropServices.MemoryMarshal.AsBytes(result.AsSpan()), byteOffset);
        return result;
    }

    /// <summary>Writes int32 values at byte <paramref name="byteOffset"/>.</summary>
    public static void UploadInt32(DeviceBuffer<byte> buffer, long byteOffset, ReadOnlySpan<int> values)
        => buffer.CopyFromHost(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values), byteOffset);
}
