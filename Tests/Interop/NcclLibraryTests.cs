using MoeNative.Interop;
using MoeNative.Interop.Native;

namespace MoeNative.Tests.Interop;

/// <summary>How libnccl is found and what a missing one reports (CPU: the probe and the message builder are called
/// directly; pip's layout is built in a temporary folder).</summary>
[TestClass]
public sealed class NcclLibraryTests
{
    private const string MissingPath = "/nonexistent/moenative-test/libnccl-missing.so.2";

    [TestMethod]
    public void Probe_VariableFirst_ThenEveryDefaultName()
    {
        (IntPtr handle, IReadOnlyList<NativeLibraryAttempt> attempts) = NativeLibraries.Probe(NativeLibraryKind.Nccl, MissingPath);
        Assert.AreEqual(MissingPath, attempts[0].Candidate);
        Assert.Contains("MOENATIVE_NCCL", attempts[0].Source);
        Assert.IsNotNull(attempts[0].Error);
        if (handle == IntPtr.Zero)
            CollectionAssert.AreEqual(NativeLibraries.DefaultNames(NativeLibraryKind.Nccl).ToArray(), attempts.Skip(1).Select(a => a.Candidate).ToArray());
        else
            Assert.IsNull(attempts[^1].Error, "the probe stops at the first library that loads");
        if (!OperatingSystem.IsWindows())
            Assert.AreEqual("libnccl.so.2", NativeLibraries.DefaultNames(NativeLibraryKind.Nccl)[0]);
    }

    [TestMethod]
    public void NotFoundMessage_NamesEveryCandidateThePipPackageAndTheVariable()
    {
        NativeLibraryAttempt[] attempts =
        [
            new(MissingPath, "from MOENATIVE_NCCL", "cannot open shared object file: No such file or directory"),
            new("libnccl.so.2", "default name", "libnccl.so.2: cannot open shared object file"),
            new("/venv/lib/python3.12/site-packages/nvidia/nccl/lib/libnccl.so.2", "default name", "wrong ELF class"),
        ];
        string message = NativeLibraries.BuildNotFoundMessage(NativeLibraryKind.Nccl, attempts);
        Assert.Contains("NCCL", message);
        Assert.Contains("nvidia-nccl-cu13", message);
        Assert.Contains("MOENATIVE_NCCL", message);
        foreach (NativeLibraryAttempt a in attempts)
        {
            Assert.Contains($"'{a.Candidate}'", message);
            Assert.Contains(a.Error!, message);
        }
    }

    [TestMethod]
    public void Version_WithoutNccl_ThrowsTheNotFoundMessage()
    {
        if (NativeLibraries.TryRequire(NativeLibraryKind.Nccl, out _, out _))
            Assert.Inconclusive("libnccl loads on this machine: there is no missing-library error to check.");
        var ex = Assert.ThrowsExactly<DllNotFoundException>(() => _ = NcclCommunicator.Version);
        Assert.Contains("MOENATIVE_NCCL", ex.Message);
        Assert.Contains("libnccl.so.2", ex.Message);
        Assert.ThrowsExactly<DllNotFoundException>(() => NcclCommunicator.CreateUniqueId());
        Assert.ThrowsExactly<DllNotFoundException>(NcclCommunicator.GroupStart);
    }

    [TestMethod]
    [DataRow("venv", DisplayName = "venv: <prefix>/lib/python3.12/site-packages")]
    [DataRow("debian", DisplayName = "system pip on Debian: <prefix>/local/lib/python3.12/dist-packages")]
    [DataRow("user", DisplayName = "pip --user: ~/.local/lib/python3.12/site-packages")]
    public void PythonPackageCandidates_FindPipsNcclBesideThePythonOnPath(string layout)
    {
        string root = Path.Combine(Path.GetTempPath(), $"moenative-nccl-{Guid.NewGuid():N}");
        try
        {
            string prefix = Path.Combine(root, "env"), home = Path.Combine(root, "home");
            Directory.CreateDirectory(Path.Combine(prefix, "bin"));
            Directory.CreateDirectory(home);
            File.WriteAllText(Path.Combine(prefix, "bin", "python3"), "");
            string site = layout switch
            {
                "venv" => Path.Combine(prefix, "lib", "python3.12", "site-packages"),
                "debian" => Path.Combine(prefix, "local", "lib", "python3.12", "dist-packages"),
                _ => Path.Combine(home, ".local", "lib", "python3.12", "site-packages"),
            };
            string library = Path.Combine(site, "nvidia", "nccl", "lib", "libnccl.so.2");
            Directory.CreateDirectory(Path.GetDirectoryName(library)!);
            File.WriteAllText(library, "");

            IReadOnlyList<string> found = NcclLibraryPaths.PythonPackageCandidates(Path.Combine(prefix, "bin"), null, null, home);
            CollectionAssert.AreEqual(new[] { library }, found.ToArray());
            // no python3 on PATH and no home: nothing
            Assert.IsEmpty(NcclLibraryPaths.PythonPackageCandidates(Path.Combine(root, "nowhere"), null, null, null));
            // an active virtual environment counts without python3 on PATH
            if (layout == "venv")
                CollectionAssert.AreEqual(new[] { library }, NcclLibraryPaths.PythonPackageCandidates("", prefix, null, null).ToArray());
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
