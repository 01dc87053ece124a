using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using MoeNative.Interop;

namespace MoeNative.Reference.IO;

/// <summary>
/// One tensor to write: dtype, shape and a writer of its raw little-endian bytes, so tensors of any size stream to
/// the file in chunks (no whole-tensor <c>byte[]</c>). The writer callback must write exactly
/// <see cref="ByteLength"/> bytes; <see cref="SafetensorsWriter.Write"/> checks it.
/// </summary>
public sealed class SafetensorsEntry
{
    /// <summary>Elements converted per chunk when float values are written as F16/BF16 (4 MiB of output).</summary>
    private const int ChunkElements = 1 << 21;

    private readonly Action<Stream> _write;

    private SafetensorsEntry(string name, SafetensorsDType dtype, long[] shape, long byteLength, Action<Stream> write)
    {
        Name = name;
        DType = dtype;
        Shape = shape;
        ByteLength = byteLength;
        _write = write;
    }

    public string Name { get; }
    public SafetensorsDType DType { get; }
    public long[] Shape { get; }

    /// <summary>Π Shape · sizeof(DType), 64-bit.</summary>
    public long ByteLength { get; }

    /// <summary>Writes the tensor's bytes to <paramref name="destination"/>.</summary>
    internal void WriteData(Stream destination) => _write(destination);

    /// <summary>
    /// A tensor whose bytes a callback writes (generated data of any size). The callback gets the file stream
    /// positioned at the tensor and must write exactly Π shape · sizeof(dtype) bytes.
    /// </summary>
    /// <exception cref="ArgumentException">A negative dimension, or a byte size past 64 bits (names the tensor).</exception>
    public static SafetensorsEntry FromWriter(string name, SafetensorsDType dtype, long[] shape, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(write);
        return new SafetensorsEntry(name, dtype, shape, ByteSize(name, dtype, shape), write);
    }

    /// <summary>Raw little-endian bytes of <paramref name="dtype"/> (not copied: keep them unchanged until written).</summary>
    public static SafetensorsEntry FromBytes(string name, SafetensorsDType dtype, long[] shape, ReadOnlyMemory<byte> data)
    {
        long need = ByteSize(name, dtype, shape);
        if (data.Length != need)
            throw new ArgumentException($"Tensor '{name}': {dtype} [{string.Join(",", shape)}] needs {need} bytes, got {data.Length}.", nameof(data));
        return new SafetensorsEntry(name, dtype, shape, need, s => s.Write(data.Span));
    }

    /// <summary>Float values stored as <paramref name="dtype"/> (F32, F16 or BF16; rounded to nearest even), converted
    /// chunk by chunk while writing (the array is not copied: keep it unchanged until written).</summary>
    public static SafetensorsEntry FromFloats(string name, long[] shape, float[] values, SafetensorsDType dtype = SafetensorsDType.F32)
    {
        ArgumentNullException.ThrowIfNull(values);
        return FromFloats(name, shape, values.AsMemory(), dtype);
    }

    /// <inheritdoc cref="FromFloats(string, long[], float[], SafetensorsDType)"/>
    public static SafetensorsEntry FromFloats(string name, long[] shape, ReadOnlyMemory<float> values, SafetensorsDType dtype = SafetensorsDType.F32)
    {
        if (dtype is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16))
            throw new ArgumentException($"Tensor '{name}': float values cannot be stored as {dtype}.", nameof(dtype));
        CheckCount(name, shape, values.Length);
        return new SafetensorsEntry(name, dtype, shape, ByteSize(name, dtype, shape), s => WriteFloats(s, values.Span, dtype));
    }

    /// <summary>Float values given as consecutive blocks (e.g. views of every expert's half of a fused tensor), written
    /// in order as one tensor of <paramref name="shape"/>, converted chunk by chunk; nothing is copied: keep the blocks
    /// unchanged until written.</summary>
    /// <exception cref="ArgumentException">The blocks do not hold Π shape values, or <paramref name="dtype"/> is not a float type.</exception>
    public static SafetensorsEntry FromFloatBlocks(string name, long[] shape, IReadOnlyList<ReadOnlyMemory<float>> blocks, SafetensorsDType dtype = SafetensorsDType.F32)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        if (dtype is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16))
            throw new ArgumentException($"Tensor '{name}': float values cannot be stored as {dtype}.", nameof(dtype));
        CheckCount(name, shape, blocks.Sum(b => (long)b.Length));
        return new SafetensorsEntry(name, dtype, shape, ByteSize(name, dtype, shape), s =>
        {
            foreach (ReadOnlyMemory<float> block in blocks) WriteFloats(s, block.Span, dtype);
        });
    }

    /// <summary>Float values from a span (copied once into an array: for small tensors; pass the array or a
    /// <see cref="ReadOnlyMemory{T}"/> for large ones).</summary>
    public static SafetensorsEntry FromFloats(string name, long[] shape, ReadOnlySpan<float> values, SafetensorsDType dtype = SafetensorsDType.F32) =>
        FromFloats(name, shape, values.ToArray().AsMemory(), dtype);

    public static SafetensorsEntry FromInt32(string name, long[] shape, ReadOnlySpan<int> values)
    {
        CheckCount(name, shape, values.Length);
        return FromBytes(name, SafetensorsDType.I32, shape, MemoryMarshal.AsBytes(values).ToArray());
    }

    public static SafetensorsEntry FromInt64(string name, long[] shape, ReadOnlySpan<long> values)
    {
        CheckCount(name, shape, values.Length);
        return FromBytes(name, SafetensorsDType.I64, shape, MemoryMarshal.AsBytes(values).ToArray());
    }

    /// <summary>Writes <paramref name="values"/> as <paramref name="dtype"/> through one pooled chunk buffer.</summary>
    internal static void WriteFloats(Stream s, ReadOnlySpan<float> values, SafetensorsDType dtype)
    {
        if (dtype == SafetensorsDType.F32)
        {
            for (int start = 0; start < values.Length; start += ChunkElements)
                s.Write(MemoryMarshal.AsBytes(values.Slice(start, Math.Min(ChunkElements, values.Length - start))));
            return;
        }
        byte[] chunk = ArrayPool<byte>.Shared.Rent(Math.Min(values.Length, ChunkElements) * 2);
        try
        {
            for (int start = 0; start < values.Length; start += ChunkElements)
            {
                int n = Math.Min(ChunkElements, values.Length - start);
                Span<byte> bytes = chunk.AsSpan(0, n * 2);
                if (dtype == SafetensorsDType.BF16) PrecisionConvert.ToBFloat16(values.Slice(start, n), MemoryMarshal.Cast<byte, BFloat16>(bytes));
                else PrecisionConvert.ToHalf(values.Slice(start, n), MemoryMarshal.Cast<byte, Half>(bytes));
                s.Write(bytes);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
    }

    private static long ByteSize(string name, SafetensorsDType dtype, long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long? n = MoeLimits.CheckedProduct(shape);
        if (n is null || n > long.MaxValue / dtype.SizeOf())
            throw new ArgumentException($"Tensor '{name}': shape [{string.Join(",", shape)}] has a negative dimension or more than 2^63 bytes.", nameof(shape));
        return n.Value * dtype.SizeOf();
    }

    private static void CheckCount(string name, long[] shape, long count)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long? n = MoeLimits.CheckedProduct(shape);
        if (n != count)
            throw new ArgumentException($"Tensor '{name}': shape [{string.Join(",", shape)}] holds {(n is null ? "an invalid number of" : n.ToString())} elements but {count} values were given.", nameof(shape));
    }
}

/// <summary>A safetensors file could not be written (folder not creatable, no permission, disk full, ...); no temp
/// file was left and an existing file of that name is unchanged.</summary>
public sealed class SafetensorsWriteException(string path, Exception inner) : IOException($"cannot write {path}: {inner.Message}", inner)
{
    /// <summary>The file that was to be written.</summary>
    public string Target { get; } = path;
}

/// <summary>
/// Writes safetensors files (header padded with spaces to a multiple of 8 bytes; tensors in the given order),
/// streamed tensor by tensor and atomically: into a temp file beside the target, renamed over it when complete; on
/// any failure the temp file is removed and the target is untouched. Runs of zero bytes become holes (the file is
/// sparse where the data is zero), so large zero tensors cost no disk.
/// </summary>
public static class SafetensorsWriter
{
    /// <exception cref="ArgumentException">Duplicate or reserved names.</exception>
    /// <exception cref="SafetensorsWriteException">The file could not be written (folder, permission, space); no temp file is left.</exception>
    /// <exception cref="InvalidOperationException">A tensor's writer wrote a number of bytes other than its size.</exception>
    public static void Write(string path, IEnumerable<SafetensorsEntry> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        List<SafetensorsEntry> list = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (SafetensorsEntry t in list)
        {
            ArgumentNullException.ThrowIfNull(t, nameof(tensors));
            if (!names.Add(t.Name)) throw new ArgumentException($"Duplicate tensor name '{t.Name}'.", nameof(tensors));
            if (t.Name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved.", nameof(tensors));
        }
        byte[] header = Header(list, metadata);
        int padded = (header.Length + 7) / 8 * 8;
        string full = System.IO.Path.GetFullPath(path);
        string dir = System.IO.Path.GetDirectoryName(full)!;
        // NOTE: a short temp name in the target's folder (same file system: the rename is atomic), independent of the
        // target name's length.
        string temp = System.IO.Path.Combine(dir, $".st-{Guid.NewGuid():N}.tmp");
        try
        {
            Directory.CreateDirectory(dir);
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            using (var sparse = new ZeroSkippingStream(file))
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
                sparse.Write(len);
                sparse.Write(header);
                for (int i = header.Length; i < padded; i++) sparse.WriteByte((byte)' ');
                foreach (SafetensorsEntry t in list)
                {
                    long start = sparse.Position;
                    t.WriteData(sparse);
                    if (sparse.Position - start != t.ByteLength)
                        throw new InvalidOperationException($"Tensor '{t.Name}': its writer wrote {sparse.Position - start} bytes, {t.ByteLength} expected.");
                }
            }
            File.Move(temp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            TryDelete(temp);
            throw new SafetensorsWriteException(full, e);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    private static void TryDelete(string temp)
    {
        try { File.Delete(temp); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* never created, or already gone */ }
    }

    private static byte[] Header(List<SafetensorsEntry> list, IReadOnlyDictionary<string, string>? metadata)
    {
        using var headerStream = new MemoryStream();
        using (var json = new Utf8JsonWriter(headerStream))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) json.WriteString(k, v);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (SafetensorsEntry t in list)
            {
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", t.DType.ToString());
                json.WriteStartArray("shape");
                foreach (long d in t.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                offset = checked(offset + t.ByteLength);
                json.WriteNumberValue(offset);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        return headerStream.ToArray();
    }

    internal static string Describe(IEnumerable<string> names, int max = 8)
    {
        var sb = new StringBuilder();
        int i = 0;
        foreach (string n in names)
        {
            if (i++ == max) { sb.Append(", ..."); break; }
            if (sb.Length > 0) sb.Append(", ");
            sb.Append('\'').Append(n).Append('\'');
        }
        return sb.ToString();
    }
}

/// <summary>
/// A write-only stream over a file that seeks past all-zero writes instead of writing them (the file system leaves
/// holes) and sets the final length on dispose. <see cref="Position"/> counts every byte written or skipped.
/// </summary>
internal sealed class ZeroSkippingStream(FileStream file) : Stream
{
    private long _position;

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => _position;
    public override long Position { get => _position; set => throw new NotSupportedException(); }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        // NOTE: only whole 4 KiB-multiple zero runs are skipped; shorter ones are written (holes are per block).
        if (buffer.Length >= 4096 && !buffer.ContainsAnyExcept((byte)0))
        {
            file.Seek(buffer.Length, SeekOrigin.Current);
        }
        else
        {
            file.Write(buffer);
        }
        _position += buffer.Length;
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
    public override void WriteByte(byte value) => Write([value]);
    public override void Flush() => file.Flush();
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) file.SetLength(_position); // a trailing hole still counts
        base.Dispose(disposing);
    }
}
