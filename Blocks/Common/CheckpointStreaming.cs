using MoeNative.Reference.IO;
using MoeNative.Interop;

namespace MoeNative.Blocks;

/// <summary>
/// Where staged checkpoint bytes go: a double-buffered set of host staging slots and destinations addressed by
/// (destination index, element offset). The device implementation (<see cref="DeviceStagingTarget"/>) stages in pinned
/// memory and copies asynchronously, converting on the GPU; tests substitute a host one.
/// </summary>
internal interface IStagingTarget
{
    /// <summary>Bytes per staging slot (a multiple of 16, so a chunk always holds whole elements of every dtype).</summary>
    int ChunkBytes { get; }

    /// <summary>Staging slot <paramref name="slot"/> (0 or 1) once the transfer that last read it has finished.</summary>
    Span<byte> Acquire(int slot);

    /// <summary>
    /// Sends the first <paramref name="byteCount"/> bytes of slot <paramref name="slot"/>, elements of
    /// <paramref name="sourceDType"/>, to destination <paramref name="destination"/> starting at element
    /// <paramref name="destinationElementOffset"/> (converted to the destination's dtype). Asynchronous: the slot is
    /// not rewritten before the next <see cref="Acquire"/> of it returns.
    /// </summary>
    void Submit(int slot, int byteCount, ScalarType sourceDType, int destination, long destinationElementOffset);

    /// <summary>Waits until every submitted transfer has finished (its errors surface here).</summary>
    void Complete();
}

/// <summary>
/// Streams checkpoint tensors (memory-mapped) through an <see cref="IStagingTarget"/> in chunks: the host copies chunk
/// n + 1 into one staging slot while the transfer of chunk n from the other is in flight. Host memory used: the two
/// slots, whatever the tensor or layer size (mapped file pages are released once staged). Destinations are indexed by
/// <see cref="MoeWeightPart"/>.
/// </summary>
internal static class CheckpointStreamer
{
    /// <summary>Host copies of a chunk are split into pieces of this size, copied in parallel (page faults of the
    /// mapping dominate a single-threaded copy).</summary>
    private const int CopyPiece = 4 << 20;

    /// <param name="placements">Tensors and destinations (from <see cref="MoeCheckpointLayout.Resolve"/>).</param>
    /// <param name="target">Staging and destinations.</param>
    /// <param name="onBytes">Called after each chunk is submitted with its byte count (progress).</param>
    public static void Run(IReadOnlyList<MoeTensorPlacement> placements, IStagingTarget target, Action<long>? onBytes)
    {
        ArgumentNullException.ThrowIfNull(placements);
        ArgumentNullException.ThrowIfNull(target);
        int chunk = target.ChunkBytes;
        if (chunk <= 0 || chunk % 16 != 0)
            throw new ArgumentException($"ChunkBytes must be a positive multiple of 16, got {chunk}.", nameof(target));
        int slot = 0;
        foreach (MoeTensorPlacement p in placements)
        {
            SafetensorsTensorView view = p.View();
            int elementBytes = p.FileDType.SizeOf();
            for (long offset = 0; offset < view.ByteLength; offset += chunk)
            {
                int n = (int)Math.Min(chunk, view.ByteLength - offset);
                Span<byte> staging = target.Acquire(slot);
                CopyParallel(view, offset, staging[..n]);
                view.Release(offset, n); // the mapped pages are staged: drop them from the resident set
                target.Submit(slot, n, p.FileDType, (int)p.Part, p.ElementOffset + offset / elementBytes);
                onBytes?.Invoke(n);
                slot ^= 1;
            }
        }
        target.Complete();
    }

    private static unsafe void CopyParallel(SafetensorsTensorView view, long offset, Span<byte> destination)
    {
        if (destination.Length <= CopyPiece)
        {
            view.Slice(offset, destination.Length).CopyTo(destination);
            return;
        }
        fixed (byte* d = destination)
        {
            nint dst = (nint)d;
            int length = destination.Length;
            Parallel.For(0, (length + CopyPiece - 1) / CopyPiece, i =>
            {
                int start = i * CopyPiece, n = Math.Min(CopyPiece, length - start);
                view.Slice(offset + start, n).CopyTo(new Span<byte>((byte*)dst + start, n));
            });
        }
    }
}
