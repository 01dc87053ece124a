using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace MoeNative.Reference.IO;

/// <summary>Element types MoeNative reads and writes in safetensors files.</summary>
public enum SafetensorsDType
{
    F32,
    F16,
    BF16,
    I32,
    I64,
}

/// <summary>Facts about <see cref="SafetensorsDType"/>.</summary>
public static class SafetensorsDTypes
{
    public static int SizeOf(this SafetensorsDType t) => t switch
    {
        SafetensorsDType.F32 or SafetensorsDType.I32 => 4,
        SafetensorsDType.F16 or SafetensorsDType.BF16 => 2,
        SafetensorsDType.I64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, null),
    };

    /// <summary>The safetensors dtype holding a storage dtype.</summary>
    public static SafetensorsDType From(ScalarType t) => t switch
    {
        ScalarType.Float32 => SafetensorsDType.F32,
        ScalarType.Float16 => SafetensorsDType.F16,
        ScalarType.BFloat16 => SafetensorsDType.BF16,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, null),
    };

    /// <summary>The storage dtype a floating safetensors dtype holds; null for the integer dtypes.</summary>
    public static ScalarType? ToScalarType(this SafetensorsDType t) => t switch
    {
        SafetensorsDType.F32 => ScalarType.Float32,
        SafetensorsDType.F16 => ScalarType.Float16,
        SafetensorsDType.BF16 => ScalarType.BFloat16,
        _ => null,
    };

    internal static bool TryParse(string text, out SafetensorsDType dtype)
    {
        (bool ok, dtype) = text switch
        {
            "F32" => (true, SafetensorsDType.F32),
            "F16" => (true, SafetensorsDType.F16),
            "BF16" => (true, SafetensorsDType.BF16),
            "I32" => (true, SafetensorsDType.I32),
            "I64" => (true, SafetensorsDType.I64),
            _ => (false, default),
        };
        return ok;
    }
}

/// <summary>One header entry: dtype, shape and byte range [Begin, End) relative to the data section.</summary>
public sealed record SafetensorsTensorInfo(string Name, string DTypeName, long[] Shape, long Begin, long End)
{
    /// <summary>The dtype, or null for a dtype MoeNative does not read (e.g. U8); reading such a tensor throws.</summary>
    public SafetensorsDType? DType => SafetensorsDTypes.TryParse(DTypeName, out SafetensorsDType d) ? d : null;
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public string ShapeText => "[" + string.Join(",", Shape) + "]";
}

/// <summary>The file violates the safetensors format or does not hold what was asked for.</summary>
public sealed class SafetensorsFormatException(string message, Exception? inner = null) : FormatException(message, inner);

/// <summary>
/// A memory-mapped safetensors file (8-byte little-endian header length, JSON header, data section). The whole
/// header is validated on open: JSON shape, known dtypes' sizes against their byte ranges, ranges inside the data
/// section, no overlaps and no holes (the data section must be covered exactly, as the format requires).
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    private const long MaxHeaderBytes = 100L << 20;

    public string Path { get; }
    public IReadOnlyDictionary<string, SafetensorsTensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private readonly long _dataStart;
    private readonly long _fileLength;
    private bool _disposed;

    private SafetensorsFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePtr, long fileLength,
        long dataStart, Dictionary<string, SafetensorsTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _map = map;
        _view = view;
        _base = basePtr;
        _fileLength = fileLength;
        _dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
    }

    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="SafetensorsFormatException">Truncated file, bad header, bad offsets (message names the tensor).</exception>
    public static SafetensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        long length = InputFiles.RequireRegularFile(path, "safetensors file");
        if (length < 8) throw new SafetensorsFormatException($"{path}: truncated ({length} bytes); a safetensors file starts with an 8-byte header length.");
        MemoryMappedFile map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            p += view.PointerOffset;
            ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(p, 8));
            if (headerLen > (ulong)MaxHeaderBytes)
                throw new SafetensorsFormatException($"{path}: header length {headerLen} exceeds the {MaxHeaderBytes}-byte limit (corrupt file?).");
            if (8 + (long)headerLen > length)
                throw new SafetensorsFormatException($"{path}: truncated: header says {headerLen} bytes but the file has {length - 8} after the length field.");
            var (tensors, metadata) = ParseHeader(path, new ReadOnlySpan<byte>(p + 8, (int)headerLen), length - 8 - (long)headerLen);
            return new SafetensorsFile(path, map, view, p, length, 8 + (long)headerLen, tensors, metadata);
        }
        catch
        {
            if (view is not null) { view.SafeMemoryMappedViewHandle.ReleasePointer(); view.Dispose(); }
            map.Dispose();
            throw;
        }
    }

    private static (Dictionary<string, SafetensorsTensorInfo>, Dictionary<string, string>) ParseHeader(string path, ReadOnlySpan<byte> header, long dataLength)
    {
        var tensors = new Dictionary<string, SafetensorsTensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!System.Text.Unicode.Utf8.IsValid(header)) throw new SafetensorsFormatException($"{path}: header is not valid UTF-8.");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header.TrimEnd((byte)' ').ToArray()); }
        catch (JsonException e) { throw new SafetensorsFormatException($"{path}: header is not valid JSON ({e.Message}).", e); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new SafetensorsFormatException($"{path}: header must be a JSON object.");
            foreach (JsonProperty prop in doc.RootElement.EnumerateObject())
            {
                if (tensors.ContainsKey(prop.Name) || (prop.Name == "__metadata__" && metadata.Count > 0))
                    throw new SafetensorsFormatException($"{path}: duplicate header entry '{prop.Name}' (each tensor name may appear once).");
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw new SafetensorsFormatException($"{path}: __metadata__ must be an object of strings.");
                    foreach (JsonProperty m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String) throw new SafetensorsFormatException($"{path}: __metadata__['{m.Name}'] must be a string.");
                        metadata[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                tensors[prop.Name] = ParseEntry(path, prop.Name, prop.Value, dataLength);
            }
        }
        // Ranges must tile the data section exactly: sorted by begin, each starts where the previous ended.
        long cursor = 0;
        SafetensorsTensorInfo? previous = null;
        foreach (SafetensorsTensorInfo t in tensors.Values.OrderBy(t => t.Begin).ThenBy(t => t.End))
        {
            if (t.Begin < cursor)
                throw new SafetensorsFormatException($"{path}: tensor '{t.Name}' bytes [{t.Begin},{t.End}) overlap tensor '{previous!.Name}' [{previous.Begin},{previous.End}).");
            if (t.Begin > cursor)
                throw new SafetensorsFormatException($"{path}: hole in the data section before tensor '{t.Name}' (bytes [{cursor},{t.Begin}) belong to no tensor).");
            cursor = t.End;
            previous = t;
        }
        if (cursor != dataLength)
            throw new SafetensorsFormatException(cursor < dataLength
                ? $"{path}: {dataLength - cursor} trailing bytes after the last tensor belong to no tensor."
                : $"{path}: truncated data section ({dataLength} bytes, tensors need {cursor}).");
        return (tensors, metadata);
    }

    private static SafetensorsTensorInfo ParseEntry(string path, string name, JsonElement e, long dataLength)
    {
        string Bad(string what) => $"{path}: tensor '{name}': {what}";
        if (e.ValueKind != JsonValueKind.Object) throw new SafetensorsFormatException(Bad("header entry must be an object."));
        if (!e.TryGetProperty("dtype", out JsonElement d) || d.ValueKind != JsonValueKind.String) throw new SafetensorsFormatException(Bad("missing string 'dtype'."));
        if (!e.TryGetProperty("shape", out JsonElement s) || s.ValueKind != JsonValueKind.Array) throw new SafetensorsFormatException(Bad("missing array 'shape'."));
        if (!e.TryGetProperty("data_offsets", out JsonElement o) || o.ValueKind != JsonValueKind.Array || o.GetArrayLength() != 2)
            throw new SafetensorsFormatException(Bad("missing 'data_offsets' [begin, end]."));
        var shape = new long[s.GetArrayLength()];
        int i = 0;
        long elements = 1;
        foreach (JsonElement dim in s.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long v) || v < 0) throw new SafetensorsFormatException(Bad($"bad shape {s.GetRawText()}."));
            shape[i++] = v;
            // NOTE: the product is checked here once, so ElementCount never wraps (a wrapped [2^32,2^32] would be 0 elements).
            try { elements = checked(elements * v); }
            catch (OverflowException) { throw new SafetensorsFormatException(Bad($"shape {s.GetRawText()}: the element count overflows 64 bits.")); }
        }
        long[] off = o.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.Number && x.TryGetInt64(out long v) ? v : -1).ToArray();
        if (off[0] < 0 || off[1] < off[0]) throw new SafetensorsFormatException(Bad($"bad data_offsets {o.GetRawText()}."));
        if (off[1] > dataLength)
            throw new SafetensorsFormatException(Bad($"data_offsets {o.GetRawText()} run past the end of the data section ({dataLength} bytes): truncated file?"));
        var info = new SafetensorsTensorInfo(name, d.GetString()!, shape, off[0], off[1]);
        if (info.DType is { } known)
        {
            long expected;
            try { expected = checked(info.ElementCount * known.SizeOf()); }
            catch (OverflowException) { throw new SafetensorsFormatException(Bad($"shape {info.ShapeText} is too large.")); }
            if (off[1] - off[0] != expected)
                throw new SafetensorsFormatException(Bad($"{info.DTypeName} {info.ShapeText} needs {expected} bytes but data_offsets span {off[1] - off[0]}."));
        }
        return info;
    }

    public bool Contains(string name) => Tensors.ContainsKey(name);

    /// <exception cref="KeyNotFoundException">No such tensor (message names it and the file).</exception>
    public SafetensorsTensorInfo Info(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Tensors.TryGetValue(name, out SafetensorsTensorInfo? info) ? info
            : throw new KeyNotFoundException($"{Path}: no tensor named '{name}' ({Tensors.Count} tensors in the file).");
    }

    /// <summary>The raw bytes of a tensor (valid until disposal).</summary>
    public ReadOnlySpan<byte> RawBytes(string name)
    {
        SafetensorsTensorInfo info = Info(name);
        return new ReadOnlySpan<byte>(_base + _dataStart + info.Begin, checked((int)(info.End - info.Begin)));
    }

    /// <summary>A floating tensor (F32, F16 or BF16) widened to float.</summary>
    /// <param name="name">Tensor name.</param>
    /// <param name="expectedShape">When given, the tensor's shape must equal it.</param>
    /// <exception cref="SafetensorsFormatException">Wrong shape or a non-floating dtype (message names the tensor).</exception>
    public float[] ReadFloat32(string name, long[]? expectedShape = null)
    {
        SafetensorsTensorInfo info = CheckShape(name, expectedShape);
        long n = info.ElementCount;
        if (n > Array.MaxLength) throw new SafetensorsFormatException($"{Path}: tensor '{name}' {info.ShapeText} is too large for one array.");
        var result = new float[n];
        byte* src = _base + _dataStart + info.Begin;
        switch (info.DType)
        {
            case SafetensorsDType.F32:
                new ReadOnlySpan<float>(src, (int)n).CopyTo(result);
                break;
            case SafetensorsDType.BF16:
                StoragePrecision.ParallelChunks((int)n, (s0, len) =>
                    PrecisionConvert.ToSingle(new ReadOnlySpan<BFloat16>((BFloat16*)src + s0, len), result.AsSpan(s0, len)));
                break;
            case SafetensorsDType.F16:
                StoragePrecision.ParallelChunks((int)n, (s0, len) =>
                    PrecisionConvert.ToSingle(new ReadOnlySpan<Half>((Half*)src + s0, len), result.AsSpan(s0, len)));
                break;
            default:
                throw new SafetensorsFormatException($"{Path}: tensor '{name}' has dtype {info.DTypeName}; expected a floating dtype (F32, F16 or BF16).");
        }
        return result;
    }

    /// <summary>An I32 tensor (I64 accepted when every value fits).</summary>
    public int[] ReadInt32(string name, long[]? expectedShape = null)
    {
        SafetensorsTensorInfo info = CheckShape(name, expectedShape);
        int n = checked((int)info.ElementCount);
        byte* src = _base + _dataStart + info.Begin;
        return info.DType switch
        {
            SafetensorsDType.I32 => new ReadOnlySpan<int>(src, n).ToArray(),
            SafetensorsDType.I64 => new ReadOnlySpan<long>(src, n).ToArray().Select(v => v is >= int.MinValue and <= int.MaxValue ? (int)v
                : throw new SafetensorsFormatException($"{Path}: tensor '{name}' value {v} does not fit int32.")).ToArray(),
            _ => throw new SafetensorsFormatException($"{Path}: tensor '{name}' has dtype {info.DTypeName}; expected I32 or I64."),
        };
    }

    /// <summary>An I64 (or I32) tensor.</summary>
    public long[] ReadInt64(string name, long[]? expectedShape = null)
    {
        SafetensorsTensorInfo info = CheckShape(name, expectedShape);
        int n = checked((int)info.ElementCount);
        byte* src = _base + _dataStart + info.Begin;
        return info.DType switch
        {
            SafetensorsDType.I64 => new ReadOnlySpan<long>(src, n).ToArray(),
            SafetensorsDType.I32 => new ReadOnlySpan<int>(src, n).ToArray().Select(v => (long)v).ToArray(),
            _ => throw new SafetensorsFormatException($"{Path}: tensor '{name}' has dtype {info.DTypeName}; expected I64 or I32."),
        };
    }

    private SafetensorsTensorInfo CheckShape(string name, long[]? expectedShape)
    {
        SafetensorsTensorInfo info = Info(name);
        if (expectedShape is not null && !info.Shape.AsSpan().SequenceEqual(expectedShape))
            throw new SafetensorsFormatException($"{Path}: tensor '{name}' has shape {info.ShapeText}, expected [{string.Join(",", expectedShape)}].");
        return info;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
        _ = _fileLength;
    }
}

/// <summary>One tensor to write: dtype, shape and its raw little-endian bytes.</summary>
public sealed record SafetensorsEntry(string Name, SafetensorsDType DType, long[] Shape, byte[] Data)
{
    /// <summary>Float values stored as <paramref name="dtype"/> (F32, F16 or BF16; rounded to nearest even).</summary>
    public static SafetensorsEntry FromFloats(string name, long[] shape, ReadOnlySpan<float> values, SafetensorsDType dtype = SafetensorsDType.F32)
    {
        CheckCount(name, shape, values.Length);
        byte[] data;
        switch (dtype)
        {
            case SafetensorsDType.F32:
                data = MemoryMarshal.AsBytes(values).ToArray();
                break;
            case SafetensorsDType.BF16:
                data = new byte[values.Length * sizeof(ushort)];
                PrecisionConvert.ToBFloat16(values, MemoryMarshal.Cast<byte, BFloat16>(data.AsSpan()));
                break;
            case SafetensorsDType.F16:
                data = new byte[values.Length * sizeof(ushort)];
                PrecisionConvert.ToHalf(values, MemoryMarshal.Cast<byte, Half>(data.AsSpan()));
                break;
            default:
                throw new ArgumentException($"Tensor '{name}': float values cannot be stored as {dtype}.", nameof(dtype));
        }
        return new SafetensorsEntry(name, dtype, shape, data);
    }

    public static SafetensorsEntry FromInt32(string name, long[] shape, ReadOnlySpan<int> values)
    {
        CheckCount(name, shape, values.Length);
        return new SafetensorsEntry(name, SafetensorsDType.I32, shape, MemoryMarshal.AsBytes(values).ToArray());
    }

    public static SafetensorsEntry FromInt64(string name, long[] shape, ReadOnlySpan<long> values)
    {
        CheckCount(name, shape, values.Length);
        return new SafetensorsEntry(name, SafetensorsDType.I64, shape, MemoryMarshal.AsBytes(values).ToArray());
    }

    private static void CheckCount(string name, long[] shape, int count)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long n = shape.Any(d => d < 0) ? -1 : shape.Aggregate(1L, (a, b) => checked(a * b));
        if (n != count)
            throw new ArgumentException($"Tensor '{name}': shape [{string.Join(",", shape)}] holds {n} elements but {count} values were given.", nameof(shape));
    }
}

/// <summary>A safetensors file could not be written (folder missing and not creatable, no permission, disk full, ...);
/// nothing was left behind and an existing file of that name is unchanged.</summary>
public sealed class SafetensorsWriteException(string path, Exception inner)
    : IOException($"cannot write {path}: {inner.Message}", inner)
{
    /// <summary>The file that was to be written.</summary>
    public string Target { get; } = path;
}

/// <summary>Writes safetensors files (header padded with spaces to a multiple of 8 bytes; tensors in the given order).</summary>
public static class SafetensorsWriter
{
    /// <summary>Writes atomically: a temp file beside <paramref name="path"/>, renamed over it when complete (the folder
    /// is created then if missing).</summary>
    /// <exception cref="ArgumentException">Duplicate names, or data lengths that disagree with dtype and shape.</exception>
    /// <exception cref="SafetensorsWriteException">The file could not be written; no temp file is left.</exception>
    public static void Write(string path, IEnumerable<SafetensorsEntry> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        List<SafetensorsEntry> list = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (SafetensorsEntry t in list)
        {
            if (!names.Add(t.Name)) throw new ArgumentException($"Duplicate tensor name '{t.Name}'.", nameof(tensors));
            if (t.Name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved.", nameof(tensors));
            long need = t.Shape.Aggregate(1L, (a, b) => a * b) * t.DType.SizeOf();
            if (t.Data.LongLength != need)
                throw new ArgumentException($"Tensor '{t.Name}': {t.DType} [{string.Join(",", t.Shape)}] needs {need} bytes, got {t.Data.LongLength}.", nameof(tensors));
        }
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
                json.WriteNumberValue(offset + t.Data.LongLength);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += t.Data.LongLength;
            }
            json.WriteEndObject();
        }
        byte[] header = headerStream.ToArray();
        int padded = (header.Length + 7) / 8 * 8;
        string full = System.IO.Path.GetFullPath(path);
        string dir = System.IO.Path.GetDirectoryName(full) ?? ".";
        // NOTE: a short temp name beside the target (same file system, so the rename is atomic); the target's own name
        // may already use the 255 bytes a name can have. Removed on any failure, the target untouched then.
        string temp = System.IO.Path.Combine(dir, $".moenative-{Guid.NewGuid():N}.tmp");
        try
        {
            Directory.CreateDirectory(dir);
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
                file.Write(len);
                file.Write(header);
                for (int i = header.Length; i < padded; i++) file.WriteByte((byte)' ');
                foreach (SafetensorsEntry t in list) file.Write(t.Data);
                file.Flush(flushToDisk: true);
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
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* nothing was created, or it is gone */ }
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
