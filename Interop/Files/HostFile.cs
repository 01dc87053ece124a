using System.Runtime.InteropServices;
using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>What a path names, from <c>stat(2)</c>.</summary>
public enum HostFileKind
{
    Regular,
    Directory,
    Fifo,
    CharacterDevice,
    BlockDevice,
    Socket,
    Other,
}

/// <summary>Type, identity and size of a path (symbolic links followed).</summary>
/// <param name="Kind">Regular file, directory, FIFO, device, ...</param>
/// <param name="Device">st_dev.</param>
/// <param name="Inode">st_ino: with <paramref name="Device"/>, the file's identity (hard links and symbolic links share it).</param>
/// <param name="Length">st_size in bytes.</param>
public readonly record struct HostFileStatus(HostFileKind Kind, ulong Device, ulong Inode, long Length);

/// <summary>
/// File facts .NET does not give: whether a path is a regular file (not a FIFO that blocks the first read, not
/// <c>/dev/zero</c> that never ends) and which file it is (device + inode, so two spellings, a symbolic link or a hard
/// link of one file compare equal). Linux x86_64/aarch64 through <c>stat(2)</c>; elsewhere <see cref="TryStat"/>
/// returns null and callers fall back to what .NET knows.
/// </summary>
public static unsafe class HostFile
{
    private static readonly bool s_supported = OperatingSystem.IsLinux()
        && RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64;

    /// <summary>The status of <paramref name="path"/>, or null when it does not exist, cannot be read, or the
    /// platform has no <c>stat</c> binding here.</summary>
    public static HostFileStatus? TryStat(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!s_supported || path.Length == 0 || path.Contains('\0')) return null;
        byte* buf = stackalloc byte[LibC.StatBufferBytes];
        try
        {
            if (LibC.stat(path, buf) != 0) return null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
        int modeOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? LibC.StModeOffsetX64 : LibC.StModeOffsetArm64;
        uint mode = *(uint*)(buf + modeOffset);
        HostFileKind kind = (mode & 0xF000) switch // S_IFMT
        {
            0x8000 => HostFileKind.Regular,          // S_IFREG
            0x4000 => HostFileKind.Directory,        // S_IFDIR
            0x1000 => HostFileKind.Fifo,             // S_IFIFO
            0x2000 => HostFileKind.CharacterDevice,  // S_IFCHR
            0x6000 => HostFileKind.BlockDevice,      // S_IFBLK
            0xC000 => HostFileKind.Socket,           // S_IFSOCK
            _ => HostFileKind.Other,
        };
        return new HostFileStatus(kind, *(ulong*)(buf + LibC.StDevOffset), *(ulong*)(buf + LibC.StInoOffset), *(long*)(buf + LibC.StSizeOffset));
    }

    /// <summary>True when both paths exist and name the same file: same device and inode where <c>stat</c> is
    /// available, else the same full path after resolving symbolic links.</summary>
    public static bool SameFile(string a, string b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (TryStat(a) is { } sa && TryStat(b) is { } sb)
            return sa.Device == sb.Device && sa.Inode == sb.Inode;
        if (s_supported) return false; // stat works here: a path it cannot stat does not exist
        return File.Exists(a) && File.Exists(b)
            && string.Equals(Resolve(a), Resolve(b), OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);
    }

    private static string Resolve(string path)
    {
        string full = Path.GetFullPath(path);
        return new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full;
    }
}
