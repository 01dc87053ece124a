using MoeNative.Cli;

namespace MoeNative.Tests.Cli;

/// <summary>What one in-process CLI call returned and wrote.</summary>
internal sealed record CliResult(int ExitCode, string Output, string Error)
{
    public override string ToString() => $"exit {ExitCode}\n--- stdout ---\n{Output}\n--- stderr ---\n{Error}";
}

/// <summary>Calls <see cref="CliApp"/> in-process with captured writers (no processes spawned).</summary>
internal static class CliHarness
{
    public static CliResult Invoke(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int exitCode = CliApp.Invoke(args, output, error);
        return new CliResult(exitCode, output.ToString(), error.ToString());
    }

    /// <summary>A fresh empty folder under the temp directory, deleted by the caller (or left for inspection on failure).</summary>
    public static DirectoryInfo NewTempDirectory(string prefix) =>
        Directory.CreateTempSubdirectory("moenative-" + prefix + "-");
}

/// <summary>A temporary folder deleted on dispose.</summary>
internal sealed class TempFolder : IDisposable
{
    private readonly DirectoryInfo _dir;

    public TempFolder(string prefix) => _dir = CliHarness.NewTempDirectory(prefix);

    public string Path(string relative) => System.IO.Path.Combine(_dir.FullName, relative);

    public void Dispose()
    {
        try
        {
            _dir.Delete(recursive: true);
        }
        catch (IOException)
        {
            // a memory-mapped file may still be closing; the OS temp cleaner gets it
        }
    }
}
