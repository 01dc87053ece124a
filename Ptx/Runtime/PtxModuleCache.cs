using System.Diagnostics.CodeAnalysis;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using MoeNative.Interop;

namespace MoeNative.Ptx;

/// <summary>
/// JIT-once cache of PTX modules, per <see cref="CudaContext"/>. Key = SHA-256 over the specialised PTX text,
/// the device's compute capability, the driver version and the JIT options, so a different card, driver or
/// specialisation never reuses a module. Modules live as long as their context (they are not unloaded).
/// Set <c>MOENATIVE_PTX_DUMP=dir</c> to write every specialised PTX text the process loads to
/// <c>dir/&lt;moduleName&gt;.&lt;key prefix&gt;.ptx</c> (written to a temp file and renamed, so readers never see half a file).
/// </summary>
internal static class PtxModuleCache
{
    /// <summary>Environment variable naming the directory specialised PTX is dumped to.</summary>
    public const string DumpEnvironmentVariable = "MOENATIVE_PTX_DUMP";

    /// <summary>The JIT options every module is loaded with (CudaModule.Load defaults: info + error log buffers only).</summary>
    public const string JitOptions = "cuModuleLoadDataEx:logs-only;O4-default";

    private static readonly ConditionalWeakTable<CudaContext, ConcurrentDictionary<string, CudaModule>> PerContext = new();

    /// <summary>Returns the module for <paramref name="specialisedPtx"/> on <paramref name="ctx"/>, JIT-compiling it on first use.</summary>
    /// <exception cref="CudaJitException">The driver rejected the PTX (carries the JIT log and module name).</exception>
    public static CudaModule GetOrLoad(CudaContext ctx, string moduleName, string specialisedPtx)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentException.ThrowIfNullOrWhiteSpace(moduleName);
        ArgumentException.ThrowIfNullOrWhiteSpace(specialisedPtx);
        ConcurrentDictionary<string, CudaModule> modules = PerContext.GetValue(ctx, _ => new ConcurrentDictionary<string, CudaModule>());
        string key = CacheKey(specialisedPtx, ctx.ComputeCapability.Major, ctx.ComputeCapability.Minor, ctx.DriverVersion.ToString(System.Globalization.CultureInfo.InvariantCulture), JitOptions);
        if (modules.TryGetValue(key, out CudaModule? hit)) return hit;
        // NOTE: JIT under a per-context lock: a failed load is not cached (the next call retries and throws again),
        // and two threads never JIT the same text twice.
        lock (modules)
        {
            if (modules.TryGetValue(key, out hit)) return hit;
            DumpIfRequested(moduleName, key, specialisedPtx);
            CudaModule module = CudaModule.Load(ctx, specialisedPtx, moduleName);
            modules[key] = module;
            return module;
        }
    }

    /// <summary>Typed kernel from a catalogued module: checks that <paramref name="module"/> lists
    /// (<paramref name="entryName"/>, <typeparamref name="TArgs"/>) and that the PTX .entry has the struct's parameter types.</summary>
    /// <exception cref="InvalidOperationException">The args struct and the .entry disagree (a library bug).</exception>
    public static PtxKernel<TArgs> GetKernel<TArgs>(CudaContext ctx, PtxModuleSpec module, string entryName) where TArgs : unmanaged
    {
        ArgumentNullException.ThrowIfNull(module);
        PtxKernelSpec spec = module.Kernels.FirstOrDefault(k => k.EntryName == entryName && k.ArgsType == typeof(TArgs))
            ?? throw new InvalidOperationException($"Module {module.ModuleName} does not list entry {entryName} with args {typeof(TArgs).Name}.");
        PtxSignature ptx = PtxSignature.Parse(module.Ptx, entryName);
        PtxSignature cs = PtxSignature.FromArgs(spec.ArgsType);
        if (!ptx.TypesMatch(cs))
            throw new InvalidOperationException("Launch args do not match the PTX .entry:\n" + ptx.DescribeMismatch(cs));
        CudaModule loaded = GetOrLoad(ctx, module.ModuleName, module.Ptx);
        CudaKernel kernel = loaded.GetKernel(entryName, ptx.Parameters.Count);
        CheckOffsets(kernel, spec.ArgsType);
        return new PtxKernel<TArgs>(kernel);
    }

    /// <summary>Every parameter field's offset in the args struct against the driver's offset of that parameter
    /// (cuFuncGetParamInfo; skipped when the driver predates it): the struct's natural layout must be the kernel's.</summary>
    private static void CheckOffsets(CudaKernel kernel, [DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicFields | DynamicallyAccessedMemberTypes.NonPublicFields)] Type argsType)
    {
        IReadOnlyList<(long Offset, long Size)>? driver = kernel.ParameterLayout;
        if (driver is null) return;
        System.Reflection.FieldInfo[] fields = PtxSignature.ParameterFields(argsType);
        long[] mine = fields.Select(f => System.Runtime.InteropServices.Marshal.OffsetOf(argsType, f.Name).ToInt64()).ToArray();
        if (driver.Count == mine.Length && driver.Select(d => d.Offset).SequenceEqual(mine)) return;
        throw new InvalidOperationException(
            $"{argsType.Name} does not lay out the parameters of '{kernel.Name}' where the driver expects them: struct offsets " +
            $"[{string.Join(", ", mine)}], driver (offset:size) [{string.Join(", ", driver.Select(d => $"{d.Offset}:{d.Size}"))}].");
    }

    /// <summary>The cache key: lowercase hex SHA-256 of text, compute capability, driver version and JIT options.</summary>
    public static string CacheKey(string specialisedPtx, int ccMajor, int ccMinor, string driverVersion, string jitOptions)
    {
        string material = $"{specialisedPtx}\0sm_{ccMajor}{ccMinor}\0driver {driverVersion}\0{jitOptions}";
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(material)));
    }

    private static void DumpIfRequested(string moduleName, string key, string ptx)
    {
        string? dir = Environment.GetEnvironmentVariable(DumpEnvironmentVariable);
        if (string.IsNullOrWhiteSpace(dir)) return;
        WriteAtomically(Path.Combine(dir, $"{SafeFileName(moduleName)}.{key[..12]}.ptx"), ptx);
    }

    /// <summary>Writes <paramref name="text"/> to a temp file next to <paramref name="path"/> and renames it over the
    /// target; on any failure the temp file is deleted and the target is untouched.</summary>
    public static void WriteAtomically(string path, string text)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        string temp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.WriteAllText(temp, text, new UTF8Encoding(false));
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    /// <summary>Module names may contain '/', ':' etc.; keep [A-Za-z0-9._-].</summary>
    public static string SafeFileName(string name) =>
        new(name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' ? c : '_').ToArray());
}

/// <summary>A loaded kernel bound to its launch-args struct, so a launch can only pass the struct it was checked against.</summary>
internal sealed class PtxKernel<TArgs> where TArgs : unmanaged
{
    internal PtxKernel(CudaKernel kernel) => Kernel = kernel;

    public CudaKernel Kernel { get; }

    /// <summary>Allocation-free launch on <paramref name="stream"/>; no synchronisation.</summary>
    public void Launch(CudaStream stream, Dim3 grid, Dim3 block, int dynamicSharedBytes, in TArgs args) =>
        Kernel.Launch(stream, grid, block, dynamicSharedBytes, in args);

    /// <summary>Allocation-free launch with programmatic stream serialisation (cuLaunchKernelEx, sm_90+): the kernel may
    /// start before the previous kernel on <paramref name="stream"/> has finished, so its PTX must run
    /// griddepcontrol.wait before it reads anything that kernel writes.</summary>
    public void LaunchProgrammatic(CudaStream stream, Dim3 grid, Dim3 block, int dynamicSharedBytes, in TArgs args) =>
        Kernel.LaunchEx(stream, grid, block, dynamicSharedBytes, in args, new LaunchAttributes(ProgrammaticStreamSerialization: true));

    /// <summary>Allocation-free launch in clusters of <paramref name="clusterX"/> CTAs along x (cuLaunchKernelEx; the
    /// kernel's .reqnctapercluster says the same, and the grid is a multiple of it).</summary>
    public void LaunchClustered(CudaStream stream, Dim3 grid, Dim3 block, int dynamicSharedBytes, in TArgs args, uint clusterX) =>
        Kernel.LaunchEx(stream, grid, block, dynamicSharedBytes, in args, new LaunchAttributes(ClusterDim: new Dim3(clusterX, 1, 1)));
}
