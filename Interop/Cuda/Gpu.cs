using System.Diagnostics.CodeAnalysis;

namespace MoeNative.Interop;

/// <summary>Is there a usable GPU, and if not, why. Nothing here throws.</summary>
public static class Gpu
{
    private static readonly Lazy<(GpuDeviceInfo? Info, string? Reason)> s_device0 = new(() =>
        TryGetDevice(0, out GpuDeviceInfo? info, out string reason) ? (info, null) : (null, reason));

    /// <summary>True when the driver library loads, cuInit succeeds and device 0 answers its queries.
    /// Probed once per process.</summary>
    public static bool IsAvailable => s_device0.Value.Info is not null;

    /// <summary>Null when <see cref="IsAvailable"/>; otherwise why not (missing library with every name tried,
    /// cuInit error, no device, ...).</summary>
    public static string? UnavailableReason => s_device0.Value.Reason;

    /// <summary>Reads device <paramref name="ordinal"/>'s properties. Never throws: on any failure returns false,
    /// <paramref name="info"/> null and the reason; on success <paramref name="reason"/> is empty.</summary>
    public static bool TryGetDevice(int ordinal, [NotNullWhen(true)] out GpuDeviceInfo? info, out string reason)
    {
        try
        {
            info = GpuDeviceInfo.Query(ordinal);
            reason = "";
            return true;
        }
        catch (Exception e)
        {
            info = null;
            reason = e switch
            {
                DllNotFoundException => e.Message,
                CudaException c => $"{c.ApiName} failed: {c.ErrorName}: {c.ErrorString}",
                ArgumentOutOfRangeException => $"No CUDA device with ordinal {ordinal}: {e.Message}",
                _ => $"{e.GetType().Name}: {e.Message}",
            };
            return false;
        }
    }
}
