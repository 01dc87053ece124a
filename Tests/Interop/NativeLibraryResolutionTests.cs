using MoeNative.Interop.Native;

namespace MoeNative.Tests.Interop;

/// <summary>What the loader reports when a library is missing. The probe and the message builder are called
/// directly, so the process-wide resolver and its cache are untouched and the tests run the same with or without
/// a GPU.</summary>
[TestClass]
public sealed class NativeLibraryResolutionTests
{
    private const string MissingPath = "/nonexistent/moenative-test/libcuda-missing.so.1";

    [TestMethod]
    [DataRow("driver")]
    [DataRow("cublas")]
    public void Probe_VariablePointsAtMissingFile_TriesItFirstThenEveryDefaultName(string library)
    {
        NativeLibraryKind kind = Kind(library);
        (IntPtr handle, IReadOnlyList<NativeLibraryAttempt> attempts) = NativeLibraries.Probe(kind, MissingPath);

        Assert.AreEqual(MissingPath, attempts[0].Candidate);
        Assert.Contains(NativeLibraries.VariableOf(kind), attempts[0].Source);
        Assert.IsFalse(string.IsNullOrWhiteSpace(attempts[0].Error), "the loader's error for the missing path is kept");
        if (handle == IntPtr.Zero)
        {
            // Nothing loaded (this machine): every default name was tried after the variable's path, in order.
            CollectionAssert.AreEqual(NativeLibraries.DefaultNames(kind).ToArray(), attempts.Skip(1).Select(a => a.Candidate).ToArray());
            Assert.IsTrue(attempts.All(a => a.Error is not null));
        }
        else
        {
            // A GPU machine: the first default name that loads ends the probe.
            Assert.IsNull(attempts[^1].Error);
            Assert.Contains(attempts[^1].Candidate, NativeLibraries.DefaultNames(kind));
        }
    }

    [TestMethod]
    [DataRow("driver")]
    [DataRow("cublas")]
    public void NotFoundMessage_NamesEveryCandidateAndBothVariables(string library)
    {
        NativeLibraryKind kind = Kind(library);
        NativeLibraryAttempt[] attempts =
        [
            new(MissingPath, "from " + NativeLibraries.VariableOf(kind), "cannot open shared object file: No such file or directory"),
            .. NativeLibraries.DefaultNames(kind).Select(n => new NativeLibraryAttempt(n, "default name", $"{n}: not found")),
        ];
        string message = NativeLibraries.BuildNotFoundMessage(kind, attempts);

        foreach (NativeLibraryAttempt a in attempts)
        {
            Assert.Contains($"'{a.Candidate}'", message);
            Assert.Contains(a.Error!, message);
        }
        Assert.Contains("MOENATIVE_CUDA_DRIVER", message);
        Assert.Contains("MOENATIVE_CUBLAS", message);
        // in the order tried
        int previous = -1;
        foreach (NativeLibraryAttempt a in attempts)
        {
            int at = message.IndexOf($"'{a.Candidate}'", StringComparison.Ordinal);
            Assert.IsGreaterThan(previous, at, $"'{a.Candidate}' out of order");
            previous = at;
        }
    }

    [TestMethod]
    public void Probe_ThisMachine_MessageFromRealAttemptsNamesTheDefaults()
    {
        (IntPtr handle, IReadOnlyList<NativeLibraryAttempt> attempts) = NativeLibraries.Probe(NativeLibraryKind.CudaDriver, MissingPath);
        if (handle != IntPtr.Zero)
            Assert.Inconclusive("The CUDA driver loads on this machine: there is no not-found message to check.");
        string message = NativeLibraries.BuildNotFoundMessage(NativeLibraryKind.CudaDriver, attempts);
        Assert.Contains(MissingPath, message);
        foreach (string name in NativeLibraries.DefaultNames(NativeLibraryKind.CudaDriver))
            Assert.Contains(name, message);
    }

    [TestMethod]
    [DataRow("driver", "libcuda.so.1", "nvcuda.dll")]
    [DataRow("cublas", "libcublas.so.13", "cublas64_13.dll")]
    public void DefaultNames_StartWithTheVersionedName(string library, string linux, string windows)
    {
        Assert.AreEqual(OperatingSystem.IsWindows() ? windows : linux, NativeLibraries.DefaultNames(Kind(library))[0]);
    }

    private static NativeLibraryKind Kind(string library) =>
        library == "driver" ? NativeLibraryKind.CudaDriver : NativeLibraryKind.Cublas;
}
