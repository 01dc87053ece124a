namespace MoeNative.Interop;

/// <summary>The argument checks of <see cref="NcclCommunicator"/>, before any native call (and testable without NCCL).</summary>
internal static class NcclChecks
{
    /// <summary>Bytes of one element of <paramref name="type"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Not a data type MoeNative sends.</exception>
    public static int ElementSize(NcclDataType type) => type switch
    {
        NcclDataType.Int8 or NcclDataType.UInt8 => 1,
        NcclDataType.Float16 or NcclDataType.BFloat16 => 2,
        NcclDataType.Int32 or NcclDataType.UInt32 or NcclDataType.Float32 => 4,
        NcclDataType.Int64 or NcclDataType.UInt64 or NcclDataType.Float64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown NCCL data type."),
    };

    /// <summary>ranks ≥ 1, rank in [0, ranks), a positive timeout.</summary>
    public static void Init(int ranks, int rank, TimeSpan timeout)
    {
        if (ranks < 1) throw new ArgumentOutOfRangeException(nameof(ranks), ranks, "A communicator needs at least 1 rank.");
        if (rank < 0 || rank >= ranks)
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank must be in [0, {ranks}) for a communicator of {ranks} ranks.");
        Timeout(timeout);
    }

    public static void Timeout(TimeSpan timeout)
    {
        if (timeout <= TimeSpan.Zero || timeout == System.Threading.Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "The timeout must be positive and finite (a failed rank must surface as an error, never a hang).");
    }

    /// <summary>One distinct device per rank (NCCL refuses two ranks on one GPU).</summary>
    public static void DistinctDevices(IReadOnlyList<int> ordinals, string paramName)
    {
        if (ordinals.Count < 1) throw new ArgumentException("At least one device is needed.", paramName);
        for (int i = 0; i < ordinals.Count; i++)
            for (int j = 0; j < i; j++)
                if (ordinals[i] == ordinals[j])
                    throw new ArgumentException(
                        $"Ranks {j} and {i} are both on device {ordinals[i]}: NCCL needs one GPU per rank ({ordinals.Count} ranks need {ordinals.Count} GPUs).", paramName);
    }

    /// <summary>A send or receive of <paramref name="count"/> elements with <paramref name="peer"/>: count ≥ 0, peer in
    /// [0, ranks), the buffer set and long enough when count &gt; 0.</summary>
    public static void Transfer(DeviceRange buffer, long count, NcclDataType type, int peer, int ranks, string bufferName)
    {
        int es = ElementSize(type);
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, "count must be >= 0.");
        if (peer < 0 || peer >= ranks)
            throw new ArgumentOutOfRangeException(nameof(peer), peer, $"peer must be a rank in [0, {ranks}).");
        Holds(buffer, count, es, type, bufferName);
    }

    /// <summary>An all-reduce of <paramref name="count"/> elements: both buffers hold them; a known reduction.</summary>
    public static void AllReduce(DeviceRange send, DeviceRange receive, long count, NcclDataType type, NcclReduceOp op)
    {
        int es = ElementSize(type);
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, "count must be >= 0.");
        if (!Enum.IsDefined(op)) throw new ArgumentOutOfRangeException(nameof(op), op, "Unknown NCCL reduction.");
        Holds(send, count, es, type, nameof(send));
        Holds(receive, count, es, type, nameof(receive));
    }

    private static void Holds(DeviceRange buffer, long count, int elementSize, NcclDataType type, string name)
    {
        if (count == 0) return;
        if (buffer.IsNull) throw new ArgumentException($"{name} is null; {count} x {type} need a device buffer.", name);
        if (count > long.MaxValue / elementSize || !buffer.CanHold(count * elementSize))
            throw new ArgumentException($"{name} ({buffer}) is too short for {count} x {type} ({count * (double)elementSize:0} bytes).", name);
    }
}
