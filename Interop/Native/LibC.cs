using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

/// <summary>
/// The few C library calls MoeNative needs on Linux, named after the C API: <c>stat(2)</c> (the file type
/// (regular file, FIFO, device) and identity (device, inode) of a path, which .NET does not expose) and
/// <c>setenv(3)</c> (native libraries such as NCCL read the C environment, which
/// <see cref="Environment.SetEnvironmentVariable(string, string)"/> does not change on Unix).
/// </summary>
internal static unsafe partial class LibC
{
    private const string Lib = "libc";

    /// <summary>int stat(const char *path, struct stat *buf); follows symbolic links; 0 on success, -1 and errno on failure.</summary>
    [LibraryImport(Lib, EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int stat(string path, byte* buf);

    /// <summary>int setenv(const char *name, const char *value, int overwrite); 0 on success, -1 and errno on failure.</summary>
    [LibraryImport(Lib, EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int setenv(string name, string value, int overwrite);

    /// <summary>Bytes reserved for <c>struct stat</c> (144 on x86_64, 128 on aarch64).</summary>
    internal const int StatBufferBytes = 256;

    // struct stat field offsets of glibc/musl on Linux. st_dev, st_ino and st_size sit at the same offsets on both
    // 64-bit architectures; st_mode follows st_nlink (u64) on x86_64 and precedes it (u32) on the generic aarch64 ABI.
    internal const int StDevOffset = 0;
    internal const int StInoOffset = 8;
    internal const int StModeOffsetX64 = 24;
    internal const int StModeOffsetArm64 = 16;
    internal const int StSizeOffset = 48;
}
