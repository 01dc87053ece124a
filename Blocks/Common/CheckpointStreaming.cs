using MoeNative.Reference;
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
    /// <param name="requireFiniteIn">When set, every staged chunk is checked before it is sent: a value that is NaN or
    /// ±Inf once rounded to this dtype (so an fp16 overflow counts) throws <see cref="NonFiniteInputException"/> naming
    /// the file, the tensor and the element.</param>
    public static void Run(IReadOnlyList<MoeTensorPlacement> placements, IStagingTarget target, Action<long>? onBytes,
        ScalarType? requireFiniteIn = null)
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
                view.Prefetch(offset + n, chunk); // read-ahead of the next chunk while this one is copied and sent
                Span<byte> staging = target.Acquire(slot);
                CopyParallel(view, offset, staging[..n]);
                view.Release(offset, n); // the mapped pages are staged: drop them from the resident set
                if (requireFiniteIn is { } dtype) RequireFinite(p, staging[..n], offset / elementBytes, dtype);
                target.Submit(slot, n, p.FileDType, (int)p.Part, p.ElementOffset + offset / elementBytes);
                onBytes?.Invoke(n);
                slot ^= 1;
            }
        }
        target.Complete();
    }

    /// <summary>Throws unless every element of <paramref name="chunk"/> (file dtype) is finite after rounding to
    /// <paramref name="dtype"/>; the chunk starts at element <paramref name="firstElement"/> of the tensor.</summary>
    private static unsafe void RequireFinite(MoeTensorPlacement p, Span<byte> chunk, long firstElement, ScalarType dtype)
    {
        int elementBytes = p.FileDType.SizeOf(), count = chunk.Length / elementBytes;
        const int Piece = 1 << 16;
        long bad = long.MaxValue; // the smallest bad element index found (pieces run in parallel)
        fixed (byte* c = chunk)
        {
            nint at = (nint)c;
            Parallel.For(0, (count + Piece - 1) / Piece, () => new float[Piece], (i, _, floats) =>
            {
                int start = i * Piece, n = Math.Min(Piece, count - start);
                Span<float> f = floats.AsSpan(0, n);
                StorageConvert.FromStorage(new ReadOnlySpan<byte>((byte*)at + (long)start * elementBytes, n * elementBytes), p.FileDType, f);
                StoragePrecision.RoundInPlace(f, dtype);
                (long found, long first) = NonFiniteValues.Find(f);
                if (found > 0) InterlockedMin(ref bad, start + first);
                return floats;
            }, _ => { });
        }
        if (bad == long.MaxValue) return;
        var value = new float[1];
        StorageConvert.FromStorage(chunk.Slice((int)bad * elementBytes, elementBytes), p.FileDType, value);
        throw new NonFiniteInputException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{p.File.Path}: tensor '{p.Name}' has a non-finite value in {dtype.ShortName()} at flat index {firstElement + bad} ({p.FileDType.ShortName()} {value[0]}); ")
            + "non-finite inputs and weights are refused (--allow-nonfinite runs anyway).");
    }

    private static void InterlockedMin(ref long target, long value)
    {
        long seen = Volatile.Read(ref target);
        while (value < seen)
        {
            long was = Interlocked.CompareExchange(ref target, value, seen);
            if (was == seen) return;
            seen = was;
        }
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
