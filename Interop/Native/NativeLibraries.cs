using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;

namespace MoeNative.Interop.Native;

/// <summary>Which native library a probe is for.</summary>
internal enum NativeLibraryKind
{
    /// <summary>The CUDA driver API (libcuda / nvcuda).</summary>
    CudaDriver,
    /// <summary>cuBLAS v2 (libcublas / cublas64_NN).</summary>
    Cublas,
    /// <summary>NCCL 2 (libnccl.so.2; also found in the site-packages of the <c>python3</c> on PATH, package nvidia-nccl-cu13).</summary>
    Nccl,
}

/// <summary>One candidate tried while loading a native library: what was tried, where the name came from, and
/// the loader's error (null when it loaded).</summary>
internal readonly record struct NativeLibraryAttempt(string Candidate, string Source, string? Error);

/// <summary>
/// Library names and their resolution. <c>[LibraryImport]</c> declarations name the logical libraries
/// <see cref="CudaDriver"/>, <see cref="Cublas"/> and <see cref="Nccl"/>; a <see cref="NativeLibrary.SetDllImportResolver"/>
/// callback, registered once by the static constructors of the binding classes, maps them to a handle: the path in
/// the kind's variable (<see cref="CudaDriverVariable"/>, <see cref="CublasVariable"/>, <see cref="NcclVariable"/>)
/// first, then the usual names (for NCCL also the pip package's folder, <see cref="NcclLibraryPaths"/>).
/// NOTE: the managed entry points (<see cref="CudaContext.Create"/>, <see cref="CublasHandle"/>, <see cref="Gpu"/>)
/// call <see cref="Require"/> before their first native call, so a missing library surfaces as our
/// <see cref="DllNotFoundException"/> (every name and path tried, both variables) and never as a loader message.
/// </summary>
internal static class NativeLibraries
{
    /// <summary>Logical name of the CUDA driver library used by <c>[LibraryImport]</c>.</summary>
    public const string CudaDriver = "moenative-cuda-driver";
    /// <summary>Logical name of the cuBLAS library used by <c>[LibraryImport]</c>.</summary>
    public const string Cublas = "moenative-cublas";
    /// <summary>Environment variable: full path of the CUDA driver library, tried before the default names.</summary>
    public const string CudaDriverVariable = "MOENATIVE_CUDA_DRIVER";
    /// <summary>Environment variable: full path of the cuBLAS library, tried before the default names.</summary>
    public const string CublasVariable = "MOENATIVE_CUBLAS";
    /// <summary>Logical name of the NCCL library used by <c>[LibraryImport]</c>.</summary>
    public const string Nccl = "moenative-nccl";
    /// <summary>Environment variable: full path of libnccl.so.2, tried before the default names.</summary>
    public const string NcclVariable = "MOENATIVE_NCCL";

    private static readonly Lock s_gate = new();
    private static bool s_resolverRegistered;
    private static readonly IntPtr[] s_handles = new IntPtr[3];     // per NativeLibraryKind
    private static readonly string?[] s_failures = new string?[3];  // per NativeLibraryKind

    /// <summary>Default names, in the order tried, for the current OS.</summary>
    public static IReadOnlyList<string> DefaultNames(NativeLibraryKind kind) => (kind, OperatingSystem.IsWindows()) switch
    {
        (NativeLibraryKind.CudaDriver, false) => ["libcuda.so.1", "libcuda.so"],
        (NativeLibraryKind.CudaDriver, true) => ["nvcuda.dll"],
        (NativeLibraryKind.Cublas, false) => ["libcublas.so.13", "libcublas.so.12"],
        (NativeLibraryKind.Cublas, true) => ["cublas64_13.dll", "cublas64_12.dll"],
        (NativeLibraryKind.Nccl, false) => ["libnccl.so.2", "libnccl.so", .. NcclLibraryPaths.PythonPackageCandidates()],
        (NativeLibraryKind.Nccl, true) => ["nccl.dll"],
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    public static string VariableOf(NativeLibraryKind kind) => kind switch
    {
        NativeLibraryKind.CudaDriver => CudaDriverVariable,
        NativeLibraryKind.Cublas => CublasVariable,
        NativeLibraryKind.Nccl => NcclVariable,
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>Registers the resolver for this assembly (idempotent, thread-safe, never throws).</summary>
    public static void EnsureResolverRegistered()
    {
        lock (s_gate)
        {
            if (s_resolverRegistered)
                return;
            s_resolverRegistered = true;
            try
            {
                NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
            }
            catch (InvalidOperationException)
            {
                // Someone (a host) registered a resolver for this assembly already: theirs wins.
            }
        }
    }

    private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath) => libraryName switch
    {
        CudaDriver => Require(NativeLibraryKind.CudaDriver),
        Cublas => Require(NativeLibraryKind.Cublas),
        Nccl => Require(NativeLibraryKind.Nccl),
        _ => IntPtr.Zero,
    };

    /// <summary>The loaded library's handle; probes once per process and caches success or failure.</summary>
    /// <exception cref="DllNotFoundException">Nothing loaded; the message lists every candidate with the loader's
    /// error and names both environment variables.</exception>
    public static IntPtr Require(NativeLibraryKind kind)
    {
        if (TryRequire(kind, out IntPtr handle, out string? failure))
            return handle;
        throw new DllNotFoundException(failure);
    }

    /// <summary>Like <see cref="Require"/> but returns false with the message instead of throwing.</summary>
    public static bool TryRequire(NativeLibraryKind kind, out IntPtr handle, out string? failure)
    {
        EnsureResolverRegistered();
        lock (s_gate)
        {
            VariableOf(kind); // validates the kind
            ref IntPtr cached = ref s_handles[(int)kind];
            ref string? cachedFailure = ref s_failures[(int)kind];
            if (cached == IntPtr.Zero && cachedFailure is null)
            {
                (IntPtr h, IReadOnlyList<NativeLibraryAttempt> attempts) = Probe(kind, Environment.GetEnvironmentVariable(VariableOf(kind)));
                if (h != IntPtr.Zero)
                    cached = h;
                else
                    cachedFailure = BuildNotFoundMessage(kind, attempts);
            }
            handle = cached;
            failure = cachedFailure;
            return handle != IntPtr.Zero;
        }
    }

    /// <summary>True when <paramref name="symbol"/> is exported by the (already required) library.</summary>
    public static bool HasExport(NativeLibraryKind kind, string symbol) =>
        NativeLibrary.TryGetExport(Require(kind), symbol, out _);

    /// <summary>
    /// Tries the variable's path (when non-empty), then every default name; stops at the first that loads.
    /// Pure apart from loading: touches no cache, so tests can call it with any <paramref name="variableValue"/>.
    /// </summary>
    public static (IntPtr Handle, IReadOnlyList<NativeLibraryAttempt> Attempts) Probe(NativeLibraryKind kind, string? variableValue)
    {
        var attempts = new List<NativeLibraryAttempt>();
        if (!string.IsNullOrWhiteSpace(variableValue))
        {
            string path = variableValue.Trim();
            if (TryLoad(path, $"from {VariableOf(kind)}", attempts, out IntPtr h))
                return (h, attempts);
        }
        foreach (string name in DefaultNames(kind))
        {
            if (TryLoad(name, "default name", attempts, out IntPtr h))
                return (h, attempts);
        }
        return (IntPtr.Zero, attempts);
    }

    private static bool TryLoad(string candidate, string source, List<NativeLibraryAttempt> attempts, out IntPtr handle)
    {
        try
        {
            handle = NativeLibrary.Load(candidate);
            attempts.Add(new NativeLibraryAttempt(candidate, source, null));
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException or ArgumentException)
        {
            attempts.Add(new NativeLibraryAttempt(candidate, source, LoaderError(e.Message)));
            handle = IntPtr.Zero;
            return false;
        }
    }

    /// <summary>The runtime's message ends with the OS loader's own line (dlerror: "libcuda.so.1: cannot open shared
    /// object file: No such file or directory") after generic advice; keep that line when there is one.</summary>
    private static string LoaderError(string message)
    {
        string last = message.TrimEnd().Split('\n')[^1].Trim();
        return last.Length > 0 ? last : message;
    }

    /// <summary>The <see cref="DllNotFoundException"/> message: the library, every candidate tried in order with
    /// its source and error, and the override variables with their current values.</summary>
    public static string BuildNotFoundMessage(NativeLibraryKind kind, IReadOnlyList<NativeLibraryAttempt> attempts)
    {
        var sb = new StringBuilder();
        sb.Append(kind switch
        {
            NativeLibraryKind.CudaDriver => "Could not load the CUDA driver library (libcuda; an NVIDIA driver must be installed).",
            NativeLibraryKind.Cublas => "Could not load the cuBLAS library (libcublas from the CUDA toolkit 12 or 13).",
            _ => "Could not load the NCCL library (libnccl.so.2: from the CUDA toolkit's NCCL package, or pip's nvidia-nccl-cu13 / nvidia-nccl-cu12, whose nvidia/nccl/lib folder is searched in the site-packages of the python3 on PATH).",
        });
        sb.Append(" Tried, in order:");
        if (attempts.Count == 0)
            sb.Append(" nothing");
        foreach (NativeLibraryAttempt a in attempts)
            sb.Append("\n  '").Append(a.Candidate).Append("' (").Append(a.Source).Append("): ").Append(a.Error ?? "loaded");
        sb.Append("\nSet ").Append(CudaDriverVariable).Append(" (CUDA driver), ").Append(CublasVariable).Append(" (cuBLAS) or ")
          .Append(NcclVariable).Append(" (NCCL) to the full path of the library to load it from elsewhere. Currently ")
          .Append(CudaDriverVariable).Append('=').Append(Describe(Environment.GetEnvironmentVariable(CudaDriverVariable)))
          .Append(", ").Append(CublasVariable).Append('=').Append(Describe(Environment.GetEnvironmentVariable(CublasVariable)))
          .Append(", ").Append(NcclVariable).Append('=').Append(Describe(Environment.GetEnvironmentVariable(NcclVariable)))
          .Append('.');
        return sb.ToString();
    }

    private static string Describe(string? value) => string.IsNullOrEmpty(value) ? "(not set)" : $"'{value}'";
}
