namespace MoeNative.Tests;

/// <summary>Files of the repository the tests run from (scripts, README): found by walking up from the test binary
/// to the folder that holds MoeNative.sln.</summary>
internal static class RepositoryFiles
{
    private static readonly Lazy<string?> s_root = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "MoeNative.sln"))) return dir.FullName;
        }
        return null;
    });

    /// <summary>The repository root, or Inconclusive when the tests run outside a checkout (a device pack).</summary>
    public static string Root => s_root.Value ?? Inconclusive("the test binary is not inside a MoeNative checkout (no MoeNative.sln above it)");

    public static string Path(string relative) => System.IO.Path.Combine(Root, relative);

    private static string Inconclusive(string reason)
    {
        Assert.Inconclusive(reason);
        return "";
    }
}
