using System.Globalization;
using MoeNative.Interop;

namespace MoeNative.Cli;

/// <summary>The GPU lines of <c>info</c>, and the "is there a GPU to run on" decision shared by the commands.</summary>
internal static class GpuReport
{
    /// <summary>The GPU path needs <c>mma.sync</c> m16n8k16 bf16, <c>ldmatrix</c> and <c>cp.async</c>: sm_80 or newer.</summary>
    public static readonly (int Major, int Minor) MinimumComputeCapability = (8, 0);

    /// <summary>Key/value lines describing device <paramref name="ordinal"/> or why it is not usable. Never throws.</summary>
    public static IEnumerable<(string Key, string Value)> Describe(int ordinal)
    {
        if (!Gpu.TryGetDevice(ordinal, out GpuDeviceInfo? info, out string reason))
        {
            yield return ("GPU", "none usable: " + Tidy(reason));
            yield break;
        }

        yield return ("GPU", $"{info.Name} (device {info.Ordinal})");
        string cc = $"{info.ComputeCapability.Major}.{info.ComputeCapability.Minor} ({info.SmName})";
        yield return ("compute cap.", IsSupported(info) ? cc : $"{cc}: below {MinimumComputeCapability.Major}.{MinimumComputeCapability.Minor}, the PTX kernels cannot run");
        yield return ("SMs", info.MultiprocessorCount.ToString(CultureInfo.InvariantCulture));
        yield return ("memory", $"{Gib(info.TotalMemoryBytes)} GiB, L2 {Mib(info.L2CacheBytes)} MiB, shared/block {info.MaxSharedMemoryPerBlockOptin / 1024} KiB (opt-in)");
        yield return ("driver", $"CUDA {info.DriverVersionText} ({info.DriverVersion})");
        yield return ("cuBLAS", CublasVersion(ordinal));
        yield return ("grouped GEMM", GemmPath(info.ComputeCapability));
    }

    /// <summary>Null when device <paramref name="ordinal"/> can run the GPU path; otherwise why not.</summary>
    public static string? WhyNoGpu(int ordinal = 0)
    {
        if (!Gpu.TryGetDevice(ordinal, out GpuDeviceInfo? info, out string reason))
        {
            return reason;
        }
        return IsSupported(info)
            ? null
            : $"{info.Name} has compute capability {info.ComputeCapability.Major}.{info.ComputeCapability.Minor}; the GPU path needs {MinimumComputeCapability.Major}.{MinimumComputeCapability.Minor} or newer";
    }

    /// <summary>Which grouped-GEMM kernels a null configuration runs on this card (the sm_90a path needs 9.0).</summary>
    private static string GemmPath((int Major, int Minor) cc)
    {
        if (!Ptx.GroupedGemm.Sm90aAvailable(cc)) return "sm80 (mma.sync) for every layout";
        return Ptx.GroupedGemm.ForcedSm80ByEnvironment
            ? "sm80 (mma.sync) for every layout: MOENATIVE_FORCE_SM80=1"
            : "sm90a (wgmma + TMA) forward NT and backward-data NN for experts of 128+ rows, sm90a (wgmma + cp.async) backward-weight TN once its tiles fill the SMs, sm80 otherwise (MOENATIVE_FORCE_SM80=1 forces sm80)";
    }

    private static bool IsSupported(GpuDeviceInfo info) => info.ComputeCapability.CompareTo(MinimumComputeCapability) >= 0;

    private static string CublasVersion(int ordinal)
    {
        try
        {
            using CudaContext context = CudaContext.Create(ordinal);
            using var cublas = new CublasHandle(context);
            int v = cublas.Version;
            return $"{v / 10000}.{v / 100 % 100}.{v % 100} ({v})";
        }
        catch (Exception e)
        {
            return "unavailable: " + CliConsole.OneLine(e.Message);
        }
    }

    /// <summary>The reason without blank lines and without the runtime's generic "consider strace / LD_DEBUG" advice,
    /// which the loader repeats for every name tried.</summary>
    internal static string Tidy(string reason)
    {
        const string advice = "In order to help diagnose loading problems, consider using a tool like strace. " +
            "If you're using glibc, consider setting the LD_DEBUG environment variable: ";
        var lines = reason.Replace("\r", "", StringComparison.Ordinal)
            .Replace(advice.TrimEnd(), "", StringComparison.Ordinal)
            .Split('\n')
            .Select(l => l.TrimEnd())
            .Where(l => l.Length > 0);
        return string.Join('\n', lines);
    }

    private static string Gib(long bytes) => (bytes / (1024.0 * 1024 * 1024)).ToString("0.0", CultureInfo.InvariantCulture);

    private static string Mib(long bytes) => (bytes / (1024.0 * 1024)).ToString("0.#", CultureInfo.InvariantCulture);
}
