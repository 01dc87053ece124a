namespace MoeNative.Blocks;

/// <summary>
/// Refuses a block's entry points while another thread is inside one. A block is not thread-safe by design: its
/// forward leaves the state its backward reads (saved activations, routing, the workspace of the shape class), so
/// even serialised calls from two threads would pair one thread's backward with the other's forward. Concurrent use
/// is therefore a clear <see cref="InvalidOperationException"/>, never corrupted results; the same thread may
/// re-enter (host calls that use the device calls). Allocation-free.
/// </summary>
internal sealed class BlockEntryGuard
{
    private int _owner; // managed thread id of the thread inside an entry point; 0 = none
    private int _depth; // re-entries of that thread

    /// <summary>Enters; dispose the result to leave.</summary>
    /// <param name="block">The block, for the message.</param>
    /// <exception cref="InvalidOperationException">Another thread is inside an entry point of this block.</exception>
    public Scope Enter(object block)
    {
        int me = Environment.CurrentManagedThreadId;
        int owner = Interlocked.CompareExchange(ref _owner, me, 0);
        if (owner != 0 && owner != me)
            throw new InvalidOperationException(
                $"{block.GetType().Name} is in use by another thread (thread {owner}): a block is not thread-safe, because its forward keeps the " +
                "state its backward reads. Use one block per thread (they may share weights), or serialise each Forward + Backward yourself.");
        _depth++;
        return new Scope(this);
    }

    /// <summary>Leaves the entry point on dispose.</summary>
    public readonly struct Scope : IDisposable
    {
        private readonly BlockEntryGuard _guard;

        internal Scope(BlockEntryGuard guard) => _guard = guard;

        public void Dispose()
        {
            if (--_guard._depth == 0) Volatile.Write(ref _guard._owner, 0);
        }
    }
}
