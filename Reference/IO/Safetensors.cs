using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using MoeNative.Interop;

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

    /// <summary>The raw bytes of a tensor under 2 GiB as one span (valid until disposal); any size through <see cref="View"/>.</summary>
    /// <exception cref="SafetensorsFormatException">The tensor is 2 GiB or more (one span cannot hold it).</exception>
    public ReadOnlySpan<byte> RawBytes(string name)
    {
        SafetensorsTensorView view = View(name);
        if (view.ByteLength > int.MaxValue)
            throw new SafetensorsFormatException($"{Path}: tensor '{name}' has {view.ByteLength} bytes, more than one span holds; read it through View(name) in slices.");
        return view.Slice(0, (int)view.ByteLength);
    }

    /// <summary>A tensor of any size as memory-mapped bytes, read in slices of up to 2 GiB (no copy).</summary>
    public SafetensorsTensorView View(string name)
    {
        SafetensorsTensorInfo info = Info(name);
        return new SafetensorsTensorView(this, info, (nint)(_base + _dataStart + info.Begin));
    }

    /// <summary>Throws <see cref="ObjectDisposedException"/> once the mapping is gone.</summary>
    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

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
        ReadFloat32(name, result);
        return result;
    }

    /// <summary>A floating tensor (F32, F16 or BF16) widened into <paramref name="destination"/>, which must hold exactly its elements.</summary>
    /// <exception cref="SafetensorsFormatException">A non-floating dtype (message names the tensor).</exception>
    /// <exception cref="ArgumentException"><paramref name="destination"/> has another length.</exception>
    public void ReadFloat32(string name, Span<float> destination)
    {
        SafetensorsTensorInfo info = Info(name);
        if (destination.Length != info.ElementCount)
            throw new ArgumentException($"Tensor '{name}' {info.ShapeText} has {info.ElementCount} elements; the destination holds {destination.Length}.", nameof(destination));
        int n = destination.Length;
        byte* src = _base + _dataStart + info.Begin;
        fixed (float* dst = destination)
        {
            nint d = (nint)dst;
            switch (info.DType)
            {
                case SafetensorsDType.F32:
                    new ReadOnlySpan<float>(src, n).CopyTo(destination);
                    break;
                case SafetensorsDType.BF16:
                    StoragePrecision.ParallelChunks(n, (s0, len) =>
                        PrecisionConvert.ToSingle(new ReadOnlySpan<BFloat16>((BFloat16*)src + s0, len), new Span<float>((float*)d + s0, len)));
                    break;
                case SafetensorsDType.F16:
                    StoragePrecision.ParallelChunks(n, (s0, len) =>
                        PrecisionConvert.ToSingle(new ReadOnlySpan<Half>((Half*)src + s0, len), new Span<float>((float*)d + s0, len)));
                    break;
                default:
                    throw new SafetensorsFormatException($"{Path}: tensor '{name}' has dtype {info.DTypeName}; expected a floating dtype (F32, F16 or BF16).");
            }
        }
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

/// <summary>
/// The memory-mapped bytes of one tensor of a <see cref="SafetensorsFile"/>, of any size: 64-bit offsets, read as
/// spans of up to 2 GiB each. Valid while the file is open (a slice of a disposed file throws
/// <see cref="ObjectDisposedException"/>; a span taken before disposal must not be used after it).
/// </summary>
public readonly unsafe struct SafetensorsTensorView
{
    private readonly SafetensorsFile _file;
    private readonly nint _address;

    internal SafetensorsTensorView(SafetensorsFile file, SafetensorsTensorInfo info, nint address)
    {
        _file = file;
        Info = info;
        _address = address;
    }

    public SafetensorsTensorInfo Info { get; }

    /// <summary>End − Begin: the tensor's size in bytes.</summary>
    public long ByteLength => Info.End - Info.Begin;

    /// <summary>Bytes [<paramref name="byteOffset"/>, <paramref name="byteOffset"/> + <paramref name="byteCount"/>) of the tensor.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the tensor.</exception>
    /// <exception cref="ObjectDisposedException">The file was disposed.</exception>
    public ReadOnlySpan<byte> Slice(long byteOffset, int byteCount)
    {
        _file.ThrowIfDisposed();
        if (byteOffset < 0 || byteCount < 0 || byteOffset > ByteLength - byteCount)
            throw new ArgumentOutOfRangeException(nameof(byteOffset), byteOffset,
                $"Bytes [{byteOffset}, {byteOffset}+{byteCount}) are not inside tensor '{Info.Name}' ({ByteLength} bytes).");
        return new ReadOnlySpan<byte>((byte*)_address + byteOffset, byteCount);
    }

    /// <summary>
    /// Tells the OS that bytes [<paramref name="byteOffset"/>, +<paramref name="byteCount"/>) will not be read again soon
    /// (Linux <c>madvise(MADV_DONTNEED)</c> on the whole pages inside the range; elsewhere nothing): the mapping drops
    /// them, so streaming a large checkpoint does not grow the process's resident set by the file's size (the data stays
    /// in the page cache; a later read maps it again). Reading the range afterwards is still valid.
    /// </summary>
    public void Release(long byteOffset, long byteCount) => Advise(byteOffset, byteCount, MemoryAdvice.MADV_DONTNEED, inner: true);

    /// <summary>Asks the OS to start reading bytes [<paramref name="byteOffset"/>, +<paramref name="byteCount"/>) ahead of
    /// use (Linux <c>madvise(MADV_WILLNEED)</c> on the pages touching the range; elsewhere nothing): a streaming reader
    /// prefetches chunk n + 1 while it copies chunk n, so a cold checkpoint is read from disk in the background.</summary>
    public void Prefetch(long byteOffset, long byteCount) => Advise(byteOffset, byteCount, MemoryAdvice.MADV_WILLNEED, inner: false);

    private void Advise(long byteOffset, long byteCount, int advice, bool inner)
    {
        _file.ThrowIfDisposed();
        byteCount = Math.Min(byteCount, ByteLength - byteOffset);
        if (!OperatingSystem.IsLinux() || byteCount <= 0 || byteOffset < 0) return;
        long page = Environment.SystemPageSize, first = (long)_address + byteOffset, last = first + byteCount;
        // NOTE: dropping pages (inner) must stay inside the range, they may hold a neighbour's bytes; prefetching may round outward.
        long start = inner ? (first + page - 1) / page * page : first / page * page;
        long end = inner ? last / page * page : (last + page - 1) / page * page;
        if (end > start) _ = MemoryAdvice.madvise((nint)start, (nuint)(end - start), advice);
    }
}

/// <summary>libc <c>madvise</c> (Linux), for <see cref="SafetensorsTensorView.Release"/>.</summary>
internal static partial class MemoryAdvice
{
    internal const int MADV_WILLNEED = 3;
    internal const int MADV_DONTNEED = 4;

    [LibraryImport("libc", EntryPoint = "madvise")]
    internal static partial int madvise(nint address, nuint length, int advice);
}
