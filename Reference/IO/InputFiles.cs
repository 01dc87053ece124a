using MoeNative.Interop;
using System.Text;

namespace MoeNative.Reference.IO;

/// <summary>
/// Reads of files a user names (configs, checkpoint indices, safetensors files): regular files only (a FIFO would
/// block the first read, <c>/dev/zero</c> never ends), size-capped before any byte is read, UTF-8 checked. Failures
/// are <see cref="InvalidDataException"/> or <see cref="FileNotFoundException"/> naming the file and what was expected.
/// </summary>
internal static class InputFiles
{
    /// <summary>Cap of a Hugging Face <c>config.json</c> (real ones are a few KiB).</summary>
    public const long MaxConfigBytes = 1L << 20;
    /// <summary>Cap of a <c>model.safetensors.index.json</c> (Qwen3-235B-A22B's is about 2 MiB).</summary>
    public const long MaxIndexBytes = 64L << 20;

    /// <summary>Throws unless <paramref name="path"/> is an existing regular file (symbolic links followed).</summary>
    /// <param name="path">The file.</param>
    /// <param name="what">What the file is, for the message (e.g. "config", "safetensors file").</param>
    /// <returns>Its length in bytes.</returns>
    public static long RequireRegularFile(string path, string what)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (HostFile.TryStat(path) is { } st)
        {
            return st.Kind switch
            {
                HostFileKind.Regular => st.Length,
                HostFileKind.Directory => throw new InvalidDataException($"{what} {path} is a folder; expected a regular file."),
                _ => throw new InvalidDataException($"{what} {path} is not a regular file ({Describe(st.Kind)}); expected a regular file."),
            };
        }
        if (Directory.Exists(path)) throw new InvalidDataException($"{what} {path} is a folder; expected a regular file.");
        if (!File.Exists(path)) throw new FileNotFoundException($"{what} not found: {path}", path);
        return new FileInfo(path).Length;
    }

    /// <summary>The text of a regular UTF-8 file of at most <paramref name="maxBytes"/> bytes.</summary>
    /// <exception cref="InvalidDataException">Not a regular file, larger than the cap, or not valid UTF-8.</exception>
    public static string ReadText(string path, string what, long maxBytes)
    {
        long length = RequireRegularFile(path, what);
        if (length > maxBytes)
            throw new InvalidDataException($"{what} {path} is {length} bytes; at most {maxBytes} bytes are read (is it really a {what}?).");
        byte[] bytes;
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan))
        {
            // NOTE: read at most cap + 1 bytes whatever the length said: a file that grows while read stays bounded.
            bytes = new byte[Math.Min(length + 1, maxBytes + 1)];
            int total = 0, n;
            while (total < bytes.Length && (n = stream.Read(bytes, total, bytes.Length - total)) > 0) total += n;
            if (total > maxBytes) throw new InvalidDataException($"{what} {path} grew past {maxBytes} bytes while being read.");
            Array.Resize(ref bytes, total);
        }
        ReadOnlySpan<byte> span = bytes;
        if (span.StartsWith("\uFEFF"u8)) span = span[3..];
        if (!System.Text.Unicode.Utf8.IsValid(span))
            throw new InvalidDataException($"{what} {path} is not valid UTF-8 text.");
        return Encoding.UTF8.GetString(span);
    }

    private static string Describe(HostFileKind kind) => kind switch
    {
        HostFileKind.Fifo => "a FIFO",
        HostFileKind.CharacterDevice => "a character device",
        HostFileKind.BlockDevice => "a block device",
        HostFileKind.Socket => "a socket",
        _ => "not a file",
    };
}
