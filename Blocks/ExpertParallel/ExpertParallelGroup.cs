using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Blocks;

/// <summary>
/// One process driving an expert-parallel layer over several GPUs: rank r on <c>contexts[r]</c> (one GPU each), a
/// non-blocking NCCL communicator per rank (<see cref="NcclCommunicator.InitRanks"/>), a stream and an
/// <see cref="ExpertParallelBlock"/> per rank. <see cref="Run"/> runs each rank's work on its own thread, as NCCL needs
/// (a rank's host waits for its peers); a rank that fails aborts its communicator and cancels the others, which abort
/// theirs, and <see cref="Run"/> throws with every rank's error: never a hang.
/// </summary>
public sealed class ExpertParallelGroup : IDisposable
{
    private readonly NcclCommunicator[] _comms;
    private readonly ExpertParallelBlock[] _blocks;
    private readonly CudaStream[] _streams;
    private readonly CancellationTokenSource _failed;
    private bool _disposed;

    private ExpertParallelGroup(NcclCommunicator[] comms, ExpertParallelBlock[] blocks, CudaStream[] streams, CancellationTokenSource failed)
    {
        _comms = comms;
        _blocks = blocks;
        _streams = streams;
        _failed = failed;
    }

    /// <summary>
    /// Communicators, streams and blocks for rank r on <paramref name="contexts"/>[r] (distinct GPUs); every block
    /// uploads the router and its experts of <paramref name="weights"/>.
    /// </summary>
    /// <exception cref="ArgumentException">No context, two on one GPU, more ranks than experts, or options the exchange cannot honour.</exception>
    /// <exception cref="NcclException">The communicators could not be made in time.</exception>
    /// <exception cref="DllNotFoundException">libnccl not found; the message lists every path tried.</exception>
    public static ExpertParallelGroup Create(IReadOnlyList<CudaContext> contexts, MoeWeights weights, ScalarType dtype,
        ExpertParallelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(contexts);
        ArgumentNullException.ThrowIfNull(weights);
        options ??= ExpertParallelOptions.Default;
        ExpertParallelChecks.Options(options, nameof(options));
        ExpertParallelChecks.Partition(weights.Config, contexts.Count, nameof(contexts));
        var failed = CancellationTokenSource.CreateLinkedTokenSource(options.Cancellation);
        ExpertParallelOptions rankOptions = options with { Cancellation = failed.Token };
        NcclCommunicator[] comms;
        try
        {
            comms = NcclCommunicator.InitRanks(contexts, options.ExchangeTimeout);
        }
        catch
        {
            failed.Dispose();
            throw;
        }
        var blocks = new ExpertParallelBlock[comms.Length];
        var streams = new CudaStream[comms.Length];
        try
        {
            for (int r = 0; r < comms.Length; r++)
            {
                streams[r] = new CudaStream(contexts[r]);
                blocks[r] = new ExpertParallelBlock(comms[r], weights, dtype, rankOptions);
            }
        }
        catch
        {
            foreach (ExpertParallelBlock? b in blocks) b?.Dispose();
            foreach (CudaStream? s in streams) s?.Dispose();
            NcclCommunicator.DisposeAll(comms);
            failed.Dispose();
            throw;
        }
        return new ExpertParallelGroup(comms, blocks, streams, failed);
    }

    /// <summary>N.</summary>
    public int Ranks => _blocks.Length;

    /// <summary>Rank r's block.</summary>
    public IReadOnlyList<ExpertParallelBlock> Blocks => _blocks;

    /// <summary>Rank r's stream (what <see cref="Run"/> hands rank r's work).</summary>
    public IReadOnlyList<CudaStream> Streams => _streams;

    /// <summary>
    /// Runs <paramref name="work"/>(rank, block, stream) for every rank at once, one thread per rank (its context
    /// current), then waits (polled) until each rank's stream is done. A rank's exception cancels the others' waits.
    /// </summary>
    /// <exception cref="AggregateException">One or more ranks failed: one inner exception per failed rank, the first
    /// failure first (the others are usually the cancellations it caused). The group is unusable afterwards.</exception>
    public void Run(Action<int, ExpertParallelBlock, CudaStream> work)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(work);
        if (_failed.IsCancellationRequested)
            throw new InvalidOperationException("A rank of this group failed before: its communicators are aborted; make a new group.");
        int n = _blocks.Length;
        var errors = new (Exception Error, long Order)[n];
        long order = 0;
        var threads = new Thread[n];
        for (int r = 0; r < n; r++)
        {
            int rank = r;
            threads[r] = new Thread(() =>
            {
                try
                {
                    _blocks[rank].Context.MakeCurrent();
                    work(rank, _blocks[rank], _streams[rank]);
                    _blocks[rank].Synchronize(_streams[rank]);
                }
                catch (Exception e)
                {
                    errors[rank] = (e, Interlocked.Increment(ref order));
                    // NOTE: abort this rank's communicator (from its own thread): NCCL work it enqueued before failing
                    // must not wait for ever on the device (nor make freeing its buffers wait); then cancel the others.
                    _comms[rank].Abort();
                    _failed.Cancel();
                }
            })
            { IsBackground = true, Name = $"moenative-ep-rank{rank}" };
            threads[r].Start();
        }
        foreach (Thread t in threads) t.Join();
        var failures = Enumerable.Range(0, n).Where(r => errors[r].Error is not null).OrderBy(r => errors[r].Order).ToArray();
        if (failures.Length > 0)
            throw new AggregateException(
                $"Expert-parallel run failed on rank(s) {string.Join(", ", failures)} of {n}: " +
                $"rank {failures[0]}: {errors[failures[0]].Error.Message}",
                failures.Select(r => errors[r].Error));
    }

    /// <summary>Disposes the blocks, the streams and the communicators (finalized together; aborted when that fails).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (ExpertParallelBlock b in _blocks) b.Dispose();
        foreach (CudaStream s in _streams) s.Dispose();
        NcclCommunicator.DisposeAll(_comms);
        _failed.Dispose();
    }
}
