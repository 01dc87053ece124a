namespace MoeNative.Interop.Native;

/// <summary>
/// Where pip puts NCCL: the packages <c>nvidia-nccl-cu13</c> / <c>nvidia-nccl-cu12</c> install
/// <c>site-packages/nvidia/nccl/lib/libnccl.so.2</c>, a folder the dynamic loader does not search. The candidates are
/// derived from the <c>python3</c> executables on PATH (and an active virtual or conda environment) without running
/// them: <c>&lt;prefix&gt;/lib/python3.*/{site,dist}-packages</c> and <c>&lt;prefix&gt;/local/lib/python3.*/dist-packages</c>
/// (Debian's system pip), plus the user's <c>~/.local/lib/python3.*/site-packages</c>.
/// </summary>
internal static class NcclLibraryPaths
{
    /// <summary>The library file inside a site-packages folder.</summary>
    public static readonly string PackageRelativePath = Path.Combine("nvidia", "nccl", "lib", "libnccl.so.2");

    /// <summary>Existing <c>libnccl.so.2</c> files of the Python environments found, in search order, without duplicates.</summary>
    public static IReadOnlyList<string> PythonPackageCandidates() =>
        PythonPackageCandidates(Environment.GetEnvironmentVariable("PATH"), Environment.GetEnvironmentVariable("VIRTUAL_ENV"),
            Environment.GetEnvironmentVariable("CONDA_PREFIX"), Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));

    /// <summary>As <see cref="PythonPackageCandidates()"/> for the given PATH, virtual env, conda prefix and home folder
    /// (pure apart from reading the file system, so tests pass their own folders).</summary>
    public static IReadOnlyList<string> PythonPackageCandidates(string? path, string? virtualEnv, string? condaPrefix, string? home)
    {
        var prefixes = new List<string>();
        if (!string.IsNullOrWhiteSpace(virtualEnv)) prefixes.Add(virtualEnv.Trim());
        if (!string.IsNullOrWhiteSpace(condaPrefix)) prefixes.Add(condaPrefix.Trim());
        foreach (string dir in (path ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string python = Path.Combine(dir, "python3");
            if (!File.Exists(python)) continue;
            // bin/python3 -> prefix; follow a symlink (a venv's python3 points at the base interpreter) for a second prefix
            AddPrefixOf(prefixes, python);
            string? target = ResolvedTarget(python);
            if (target is not null) AddPrefixOf(prefixes, target);
        }
        var sitePackages = new List<string>();
        foreach (string prefix in prefixes)
        {
            sitePackages.AddRange(PythonFolders(Path.Combine(prefix, "lib"), "site-packages", "dist-packages"));
            sitePackages.AddRange(PythonFolders(Path.Combine(prefix, "local", "lib"), "dist-packages", "site-packages"));
        }
        if (!string.IsNullOrWhiteSpace(home))
            sitePackages.AddRange(PythonFolders(Path.Combine(home, ".local", "lib"), "site-packages"));
        var found = new List<string>();
        foreach (string folder in sitePackages)
        {
            string candidate = Path.Combine(folder, PackageRelativePath);
            if (File.Exists(candidate) && !found.Contains(candidate)) found.Add(candidate);
        }
        return found;
    }

    private static void AddPrefixOf(List<string> prefixes, string pythonExecutable)
    {
        string? bin = Path.GetDirectoryName(pythonExecutable);
        string? prefix = bin is null ? null : Path.GetDirectoryName(bin);
        if (prefix is not null && !prefixes.Contains(prefix)) prefixes.Add(prefix);
    }

    private static string? ResolvedTarget(string file)
    {
        try
        {
            FileSystemInfo? target = new FileInfo(file).ResolveLinkTarget(returnFinalTarget: true);
            return target?.FullName;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary><c>libDir/python3.*/&lt;leaf&gt;</c> for each leaf, newest Python first.</summary>
    private static IEnumerable<string> PythonFolders(string libDir, params string[] leaves)
    {
        if (!Directory.Exists(libDir)) return [];
        string[] versions;
        try
        {
            versions = Directory.GetDirectories(libDir, "python3*");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
        Array.Sort(versions, StringComparer.Ordinal);
        Array.Reverse(versions);
        return versions.SelectMany(v => leaves.Select(leaf => Path.Combine(v, leaf))).Where(Directory.Exists).ToArray();
    }
}
