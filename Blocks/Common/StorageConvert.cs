using System.Runtime.InteropServices;
using MoeNative.Interop;

namespace MoeNative.Blocks;

/// <summary>
/// Host conversions between fp32 values and the raw bytes of a storage dtype, through Interop's vectorised
/// <see cref="PrecisionConvert"/> (round-to-nearest-even; fp32 copied). Large spans are converted in parallel chunks.
/// </summary>
internal static class StorageConvert
{
    private const int ParallelChunk = 1 << 20;

    /// <summary>Writes <paramref name="src"/> rounded to <paramref name="dtype"/> into <paramref name="dst"/>
    /// (<c>src.Length * dtype.SizeOf()</c> bytes).</summary>
    public static void ToStorage(ReadOnlySpan<float> src, ScalarType dtype, Span<byte> dst)
    {
        if (dst.Length != (long)src.Length * dtype.SizeOf())
            throw new ArgumentException($"Expected {src.Length * (long)dtype.SizeOf()} bytes for {src.Length} {dtype.ShortName()} values, got {dst.Length}.", nameof(dst));
        switch (dtype)
        {
            case ScalarType.Float32:
                MemoryMarshal.AsBytes(src).CopyTo(dst);
                break;
            case ScalarType.BFloat16:
                PrecisionConvert.ToBFloat16(src, MemoryMarshal.Cast<byte, BFloat16>(dst));
                break;
            case ScalarType.Float16:
                PrecisionConvert.ToHalf(src, MemoryMarshal.Cast<byte, Half>(dst));
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Expected Float32, Float16 or BFloat16.");
        }
    }

    /// <summary>Widens the <paramref name="dtype"/> bytes of <paramref name="src"/> into <paramref name="dst"/> (exact).</summary>
    public static void FromStorage(ReadOnlySpan<byte> src, ScalarType dtype, Span<float> dst)
    {
        if (src.Length != (long)dst.Length * dtype.SizeOf())
            throw new ArgumentException($"Expected {dst.Length * (long)dtype.SizeOf()} bytes for {dst.Length} {dtype.ShortName()} values, got {src.Length}.", nameof(src));
        switch (dtype)
        {
            case ScalarType.Float32:
                src.CopyTo(MemoryMarshal.AsBytes(dst));
                break;
            case ScalarType.BFloat16:
                PrecisionConvert.ToSingle(MemoryMarshal.Cast<byte, BFloat16>(src), dst);
                break;
            case ScalarType.Float16:
                PrecisionConvert.ToSingle(MemoryMarshal.Cast<byte, Half>(src), dst);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Expected Float32, Float16 or BFloat16.");
        }
    }

    /// <summary><see cref="ToStorage"/> in parallel slices (for spans of millions of elements).</summary>
    public static unsafe void ToStorageParallel(ReadOnlySpan<float> src, ScalarType dtype, Span<byte> dst)
    {
        if (src.Length < 2 * ParallelChunk) { ToStorage(src, dtype, dst); return; }
        int s = dtype.SizeOf();
        fixed (float* pSrc = src)
        fixed (byte* pDst = dst)
        {
            nint srcAddr = (nint)pSrc, dstAddr = (nint)pDst;
            ForEachChunk(src.Length, (start, count) => ToStorage(new ReadOnlySpan<float>((float*)srcAddr + start, count), dtype,
                new Span<byte>((byte*)dstAddr + (long)start * s, count * s)));
        }
    }

    /// <summary><see cref="FromStorage"/> in parallel slices (for spans of millions of elements).</summary>
    public static unsafe void FromStorageParallel(ReadOnlySpan<byte> src, ScalarType dtype, Span<float> dst)
    {
        if (dst.Length < 2 * ParallelChunk) { FromStorage(src, dtype, dst); return; }
        int s = dtype.SizeOf();
        fixed (byte* pSrc = src)
        fixed (float* pDst = dst)
        {
            nint srcAddr = (nint)pSrc, dstAddr = (nint)pDst;
            ForEachChunk(dst.Length, (start, count) => FromStorage(new ReadOnlySpan<byte>((byte*)srcAddr + (long)start * s, count * s),
                dtype, new Span<float>((float*)dstAddr + start, count)));
        }
    }

    /// <summary>Runs <paramref name="convert"/>(start, count) over [0, length) in <see cref="ParallelChunk"/>-element slices, in parallel.</summary>
    private static void ForEachChunk(int length, Action<int, int> convert) =>
        Parallel.For(0, (length + ParallelChunk - 1) / ParallelChunk, c =>
        {
            int start = c * ParallelChunk;
            convert(start, Math.Min(ParallelChunk, length - start));
        });

    /// <summary>The .NET element type that holds one <paramref name="dtype"/> value in a typed device buffer.</summary>
    public static Type ElementType(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => typeof(float),
        ScalarType.Float16 => typeof(Half),
        ScalarType.BFloat16 => typeof(BFloat16),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Expected Float32, Float16 or BFloat16."),
    };
}
