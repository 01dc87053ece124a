using System.Text;
using MoeNative.Interop;

namespace MoeNative.Cli;

/// <summary>
/// Checks of an output file path made before anything is read, computed or created: it names a file (not a folder),
/// its name fits the file system, the nearest existing ancestor is a folder, and it is none of the input files
/// (compared as files, by device and inode: another spelling, a symbolic link or a hard link of an input is refused).
/// Nothing is created here; the writer makes the folder when it writes.
/// </summary>
internal static class OutputPath
{
    /// <summary>Bytes a file name may have (Linux NAME_MAX, most file systems).</summary>
    public const int MaxNameBytes = 255;

    /// <exception cref="CliUsageException">The path cannot be an output; the message starts with <c>--output</c>.</exception>
    public static void Validate(string output, IEnumerable<(string Option, string Path)> inputs, string option = "--output")
    {
        ArgumentNullException.ThrowIfNull(output);
        if (output.Length == 0) throw new CliUsageException($"{option}: empty path; give a file name");
        if (Directory.Exists(output)) throw new CliUsageException($"{option} {output} is a folder; give a file name");
        string full;
        try { full = Path.GetFullPath(output); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new CliUsageException($"{option} {output}: not a valid path ({e.Message})");
        }
        string name = Path.GetFileName(full);
        if (name.Length == 0 || name is "." or "..") throw new CliUsageException($"{option} {output} names a folder; give a file name");
        int nameBytes = Encoding.UTF8.GetByteCount(name);
        if (nameBytes > MaxNameBytes)
            throw new CliUsageException($"{option}: file name is {nameBytes} bytes; at most {MaxNameBytes} bytes are allowed");
        for (string? dir = Path.GetDirectoryName(full); dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (Directory.Exists(dir)) break;
            if (File.Exists(dir)) throw new CliUsageException($"{option} {output}: {dir} is a file, not a folder");
        }
        if (!File.Exists(full)) return; // a new file cannot be an input
        if (HostFile.TryStat(full) is { Kind: not HostFileKind.Regular })
            throw new CliUsageException($"{option} {output} exists and is not a regular file; an output replaces only a regular file");
        foreach ((string inputOption, string input) in inputs)
        {
            if (HostFile.SameFile(full, input))
                throw new CliUsageException($"{option} {output} is the same file as {inputOption} {input}; an output never overwrites an input");
        }
    }
}
