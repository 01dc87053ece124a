namespace MoeNative.Blocks;

/// <summary>How a checkpoint is loaded onto the device.</summary>
public sealed record CheckpointLoadOptions
{
    /// <summary>64 MiB: large enough for full-speed copies, small enough that two fit anywhere.</summary>
    public const int DefaultChunkBytes = 64 << 20;

    /// <summary>Bytes per pinned staging slot (two slots): the host memory a load needs, whatever the layer size.
    /// A positive multiple of 16.</summary>
    public int ChunkBytes { get; init; } = DefaultChunkBytes;

    /// <summary>Called after every staged chunk (on the loading thread).</summary>
    public Action<CheckpointLoadProgress>? Progress { get; init; }

    /// <summary>Decoder layers to load; null: every MoE layer of the checkpoint.</summary>
    public IReadOnlyList<int>? Layers { get; init; }

    /// <summary>Refuse a weight that is NaN or ±Inf once rounded to the device dtype (an fp16 overflow counts):
    /// every staged chunk is checked on the host before it is sent (parallel; costs load rate). Off by default.</summary>
    public bool RequireFinite { get; init; }
}

/// <summary>Where a load stands: file bytes staged so far of the total, the layer being loaded.</summary>
/// <param name="BytesDone">Checkpoint bytes submitted to the device so far.</param>
/// <param name="BytesTotal">Checkpoint bytes of every layer being loaded.</param>
/// <param name="Layer">Decoder layer index being loaded.</param>
/// <param name="LayersDone">Layers complete.</param>
/// <param name="LayerCount">Layers being loaded.</param>
/// <param name="Elapsed">Since the load began.</param>
public readonly record struct CheckpointLoadProgress(long BytesDone, long BytesTotal, int Layer, int LayersDone, int LayerCount, TimeSpan Elapsed)
{
    /// <summary>File bytes per second so far, in GB/s (10^9).</summary>
    public double GigabytesPerSecond => Elapsed.TotalSeconds > 0 ? BytesDone / 1e9 / Elapsed.TotalSeconds : 0;
}

/// <summary>What a load took.</summary>
/// <param name="FileBytes">Checkpoint bytes read (the layers' tensors in the file's dtype).</param>
/// <param name="DeviceBytes">Device bytes of the loaded weights (in the compute dtype).</param>
/// <param name="Elapsed">Wall time, from opening the files to the last copy complete.</param>
/// <param name="PinnedBytes">Pinned staging used.</param>
/// <param name="HostBaselineBytes">Process anonymous resident memory (RssAnon) before the load; -1 where unknown.</param>
/// <param name="HostPeakBytes">Largest RssAnon sampled after every chunk of the load; -1 where unknown. File pages of
/// the memory-mapped checkpoint are not anonymous memory (the kernel's page cache) and are not counted.</param>
public sealed record CheckpointLoadStats(long FileBytes, long DeviceBytes, TimeSpan Elapsed, long PinnedBytes,
    long HostBaselineBytes, long HostPeakBytes)
{
    /// <summary>File bytes per second, in GB/s (10^9).</summary>
    public double GigabytesPerSecond => Elapsed.TotalSeconds > 0 ? FileBytes / 1e9 / Elapsed.TotalSeconds : 0;
}

/// <summary>Process memory as the kernel reports it (Linux <c>/proc/self/status</c>); -1 elsewhere.</summary>
public static class ProcessMemory
{
    /// <summary>RssAnon: resident anonymous memory (heap, stacks, pinned buffers), in bytes.</summary>
    public static long AnonymousResidentBytes() => Field("RssAnon:");

    /// <summary>VmRSS: resident set now (anonymous and file-backed, including mapped files), in bytes.</summary>
    public static long ResidentBytes() => Field("VmRSS:");

    /// <summary>VmHWM: peak resident set (anonymous and file-backed, including mapped files), in bytes.</summary>
    public static long PeakResidentBytes() => Field("VmHWM:");

    private static long Field(string name)
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (!line.StartsWith(name, StringComparison.Ordinal)) continue;
                string[] parts = line[name.Length..].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries); // "VmRSS:\t  2124 kB"
                return long.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture) * 1024; // "kB"
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return -1;
        }
        return -1;
    }
}
