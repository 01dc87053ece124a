using MoeNative.Interop;

namespace MoeNative.Tests;

/// <summary>
/// Shared GPU state of the test process. GPU tests carry <c>[TestCategory("Gpu")]</c> and start with
/// <see cref="RequireContext"/>: on a machine without a usable GPU they end Inconclusive with the reason; on a GPU
/// machine every test shares one <see cref="CudaContext"/> (device 0, or MOENATIVE_TEST_DEVICE).
/// Without a GPU the full reason (every library name and path tried, the variables that override them) is given
/// once per run, by the first GPU test that asks and on stderr at the start of the run; every other GPU test ends
/// Inconclusive with the reason's first line only, so ~2,000 skipped tests print ~2,000 short lines, not 10,000.
/// </summary>
public static class GpuTest
{
    /// <summary>Test category of tests that need a GPU.</summary>
    public const string Category = "Gpu";

    private static readonly Lock s_gate = new();
    private static CudaContext? s_context;
    private static string? s_failure;
    private static int s_fullReasonGiven;

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
            Assert.Inconclusive(InconclusiveMessage(s_failure!, firstTime: Interlocked.Exchange(ref s_fullReasonGiven, 1) == 0));
        return s_context!;
    }

    /// <summary>"No usable GPU: &lt;reason&gt;" the first time; later "No usable GPU: &lt;the reason's first sentence&gt;
    /// (full reason: ...)" on one line.</summary>
    internal static string InconclusiveMessage(string reason, bool firstTime)
    {
        if (firstTime) return $"No usable GPU: {reason}";
        string first = reason.Split('\n', 2)[0];
        int sentenceEnd = first.IndexOf(". ", StringComparison.Ordinal);
        first = (sentenceEnd >= 0 ? first[..sentenceEnd] : first).TrimEnd().TrimEnd('.', ':');
        return $"No usable GPU: {first} (full reason: the first GPU test of the run)";
    }

    /// <summary>Says once, at the start of the run, why the GPU tests will end Inconclusive (nothing on a GPU machine).</summary>
    internal static void ReportOnceAtStart()
    {
        int ordinal = int.TryParse(Environment.GetEnvironmentVariable("MOENATIVE_TEST_DEVICE"), out int o) ? o : 0;
        if (!Gpu.TryGetDevice(ordinal, out _, out string reason))
            Console.Error.WriteLine($"MoeNative.Tests: no usable GPU, so every [TestCategory(\"Gpu\")] test ends Inconclusive. Reason: {reason}");
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
