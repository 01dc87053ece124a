using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>
/// NCCL settings MoeNative fixes in its process before NCCL reads them (NCCL reads the C environment, once, when it
/// initialises): <c>NCCL_NVLS_ENABLE=0</c>, NVLink SHARP multicast off, which on shared multi-GPU machines takes
/// fabric resources other jobs need (issue 13).
/// </summary>
public static class NcclEnvironment
{
    /// <summary>The variables and values set, in order.</summary>
    public static IReadOnlyList<(string Name, string Value)> Settings { get; } = [("NCCL_NVLS_ENABLE", "0")];

    private static int s_applied;

    /// <summary>Sets <see cref="Settings"/> in the native and the managed environment (once per process; idempotent).
    /// Called before the first NCCL call.</summary>
    public static void Apply()
    {
        if (Interlocked.Exchange(ref s_applied, 1) != 0) return;
        foreach ((string name, string value) in Settings)
        {
            if (!OperatingSystem.IsWindows()) LibC.setenv(name, value, 1);
            Environment.SetEnvironmentVariable(name, value);
        }
    }
}
