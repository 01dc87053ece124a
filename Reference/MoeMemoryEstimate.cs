using System.Globalization;

namespace MoeNative.Reference;

/// <summary>
/// How much host memory a reference run of T tokens takes (float32 arrays: the weights and, unless they are stored
/// exactly in the run's dtype, their rounded copy; the saved forward state of <see cref="MoeIntermediates"/>; the
/// backward's temporaries and gradients; the small output copies), and a
/// check of it against the memory the machine has free, made before the first large allocation so that a huge T
/// fails up front with a message instead of exhausting memory.
/// </summary>
public static class MoeMemoryEstimate
{
    /// <summary>Bytes <paramref name="runs"/> reference runs of <paramref name="tokens"/> tokens allocate on the host,
    /// roughly (an upper estimate): the weights (<paramref name="weightCopies"/> times: 2 when a rounded copy may be
    /// made, 1 when the weights are known to be stored in the run's dtype), each run's saved forward state (and backward
    /// temporaries and weight-sized gradients), and, when <paramref name="written"/>, the output file's copies of the
    /// activation-sized tensors (the weight gradients are written from views, not copied).</summary>
    public static double HostBytes(MoeConfig config, long tokens, bool backward, int runs = 1, bool written = false, int weightCopies = 2)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        ArgumentOutOfRangeException.ThrowIfNegative(runs);
        ArgumentOutOfRangeException.ThrowIfLessThan(weightCopies, 1);
        double h = config.HiddenSize, i = config.IntermediateSize, e = config.NumExperts, k = config.TopK, t = tokens;
        double weights = e * h + 3 * e * i * h;
        double forward = t * (3 * h + 2 * e) + t * k * (3 * i + 2 * h);
        double back = backward ? weights + t * (3 * h + e) + t * k * (3 * i + 3 * h) : 0;
        double output = written ? t * (h + e) + (backward ? t * h : 0) : 0;
        return sizeof(float) * (weightCopies * weights + runs * (forward + back) + output);
    }

    /// <summary>Host memory free for this process: the smaller of the GC's limit (container aware) and, on Linux,
    /// MemAvailable of /proc/meminfo.</summary>
    public static long AvailableHostBytes()
    {
        long limit = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        try
        {
            if (OperatingSystem.IsLinux())
            {
                foreach (string line in File.ReadLines("/proc/meminfo"))
                {
                    if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal)) continue;
                    string kb = line["MemAvailable:".Length..].Trim().Split(' ')[0];
                    if (long.TryParse(kb, NumberStyles.None, CultureInfo.InvariantCulture, out long v)) limit = Math.Min(limit, v * 1024);
                    break;
                }
            }
        }
        catch (IOException) { /* keep the GC's figure */ }
        catch (UnauthorizedAccessException) { /* keep the GC's figure */ }
        return limit;
    }

    /// <summary>Throws <see cref="InsufficientMemoryException"/> when <see cref="HostBytes"/> exceeds
    /// <see cref="AvailableHostBytes"/>.</summary>
    /// <param name="config">The layer.</param>
    /// <param name="tokens">T.</param>
    /// <param name="backward">Whether the backward runs too.</param>
    /// <param name="what">Where T came from, for the message (e.g. "--seqlen 5000000", "hidden_states [5000000,2048]").</param>
    /// <param name="runs">How many runs' state is held at once (verify keeps the oracle's and each implementation's).</param>
    /// <param name="written">Whether the results are also copied into an output file.</param>
    /// <param name="weightCopies">2 when the weights may be rounded into a copy, 1 when they are stored in the run's dtype.</param>
    public static void RequireHostMemory(MoeConfig config, long tokens, bool backward, string what, int runs = 1, bool written = false, int weightCopies = 2)
    {
        double need = HostBytes(config, tokens, backward, runs, written, weightCopies);
        long free = AvailableHostBytes();
        if (need > free)
            throw new InsufficientMemoryException(string.Create(CultureInfo.InvariantCulture,
                $"{what}: T={tokens} needs about {need / (1L << 30):0.0} GiB of host memory for {(backward ? "forward + backward" : "the forward")} at {config}, but {free / (double)(1L << 30):0.0} GiB are available."));
    }
}
