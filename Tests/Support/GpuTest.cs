using MoeNative.Interop;

namespace MoeNative.Tests;

/// <summary>
/// Shared GPU state of the test process. GPU tests carry <c>[TestCategory("Gpu")]</c> and start with
/// <see cref="RequireContext"/>: on a machine without a usable GPU they end Inconclusive with the reason; on a GPU
/// machine every test shares one <see cref="CudaContext"/> (device 0, or MOENATIVE_TEST_DEVICE).
/// </summary>
public static class GpuTest
{
    /// <summary>Test category of tests that need a GPU.</summary>
    public const string Category = "Gpu";

    private static readonly Lock s_gate = new();
    private static CudaContext? s_context;
    private static string? s_failure;

    /// <summary>The shared context, or <see cref="Assert.Inconclusive(string)"/> "No usable GPU: &lt;reason&gt;".
    /// Never dispose it.</summary>
    public static CudaContext RequireContext()
    {
        lock (s_gate)
        {
            if (s_context is null && s_failure is null)
            {
                int ordinal = int.TryParse(Environment.GetEnvironmentVariable("MOENATIVE_TEST_DEVICE"), out int o) ? o : 0;
                if (!Gpu.TryGetDevice(ordinal, out _, out string reason))
                    s_failure = reason;
                else
                    s_context = CudaContext.Create(ordinal); // a GPU that answers queries but cannot make a context fails the test
            }
        }
        if (s_context is null)
            Assert.Inconclusive($"No usable GPU: {s_failure}");
        return s_context!;
    }

    /// <summary>A new stream in the shared context (Inconclusive without a GPU). Dispose it.</summary>
    public static CudaStream NewStream() => new(RequireContext());

    /// <summary>A new cuBLAS handle bound to <paramref name="stream"/> (Inconclusive without a GPU; a missing
    /// cuBLAS on a GPU machine fails). Dispose it.</summary>
    public static CublasHandle NewCublas(CudaStream stream)
    {
        var handle = new CublasHandle(stream.Context);
        handle.SetStream(stream);
        return handle;
    }
}
