using MoeNative.Interop;

namespace MoeNative.Blocks;

/// <summary>How many GPUs an expert-parallel run can use, and the one-line reason when there are too few.</summary>
public static class ExpertParallelDevices
{
    /// <summary>GPUs that answer their queries (ordinals 0, 1, ... until the first that does not); 0 without a driver.</summary>
    public static int Count()
    {
        int n = 0;
        while (n < 1024 && Gpu.TryGetDevice(n, out _, out _)) n++;
        return n;
    }

    /// <summary>Null when <paramref name="available"/> GPUs are enough for <paramref name="ranks"/> ranks; else why not.</summary>
    public static string? Shortage(int ranks, int available) => available >= ranks ? null
        : $"expert parallelism over {ranks} ranks needs {ranks} GPUs (one per rank, NCCL); this machine has {available}" +
          (available == 0 ? $" ({FirstSentence(Gpu.UnavailableReason ?? "no usable GPU")})" : "") + ".";

    private static string FirstSentence(string reason)
    {
        string line = reason.Split('\n')[0];
        int tried = line.IndexOf(" Tried, in order:", StringComparison.Ordinal);
        return (tried >= 0 ? line[..tried] : line).TrimEnd('.', ' ');
    }
}
