using System.Diagnostics;
using System.Runtime.InteropServices;
using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>
/// One rank of an NCCL communicator, bound to a context's GPU (one GPU per rank). Made non-blocking
/// (<c>ncclConfig_t.blocking = 0</c>) by <see cref="InitRank"/> and <see cref="InitRanks"/>: no NCCL call waits on the
/// host for a peer; completion is polled (<see cref="WaitForCalls"/>, <see cref="WaitFor"/>) against a timeout, and a
/// peer that failed, exited or never made the matching call surfaces as an <see cref="NcclException"/>
/// (<see cref="NcclResult.Timeout"/>) after this rank's communicator is aborted, never as a hang.
/// <see cref="InitAll"/> (<c>ncclCommInitAll</c>) makes blocking communicators of one process.
/// </summary>
/// <remarks>
/// <para>Transfers (<see cref="Send"/>, <see cref="Recv"/>, <see cref="AllReduce"/>) are enqueued on a stream of this
/// context; inside <see cref="GroupStart"/> / <see cref="GroupEnd"/> they are issued together (NCCL's group
/// semantics: every rank's sends and receives of one exchange in one group, so their order cannot deadlock).</para>
/// <para>Use a communicator from one thread at a time; another thread stops a wait through its
/// <see cref="CancellationToken"/> (the waiting thread then aborts the communicator). After an abort every call throws
/// <see cref="InvalidOperationException"/>: make a new communicator. <see cref="Dispose"/> finalizes (bounded wait)
/// and destroys; a communicator that cannot be finalized in time is aborted.</para>
/// <para>The library: libnccl.so.2 (MOENATIVE_NCCL, else the default names, else pip's nvidia/nccl/lib in the
/// site-packages of the python3 on PATH). NCCL_NVLS_ENABLE=0 is set in the process before NCCL starts
/// (<see cref="NcclEnvironment"/>).</para>
/// </remarks>
public sealed partial class NcclCommunicator : IDisposable
{
    /// <summary>How long <see cref="Dispose"/> waits for an orderly finalize before aborting.</summary>
    public static readonly TimeSpan FinalizeTimeout = TimeSpan.FromSeconds(10);

    private readonly SafeNcclCommHandle _handle;
    private string? _abortReason;

    private NcclCommunicator(CudaContext context, IntPtr comm, int size, int rank, bool blocking)
    {
        _handle = new SafeNcclCommHandle(comm, context.SafeHandle);
        Context = context;
        Size = size;
        Rank = rank;
        IsBlocking = blocking;
    }

    /// <summary>The context (GPU) of this rank; streams and buffers passed in must belong to it.</summary>
    public CudaContext Context { get; }

    /// <summary>Number of ranks.</summary>
    public int Size { get; }

    /// <summary>This rank, in [0, <see cref="Size"/>).</summary>
    public int Rank { get; }

    /// <summary>False for <see cref="InitRank"/>/<see cref="InitRanks"/> (polled), true for <see cref="InitAll"/>.</summary>
    public bool IsBlocking { get; }

    /// <summary>True after <see cref="Abort"/> (or a failed or timed-out wait, which aborts).</summary>
    public bool IsAborted => _handle.IsGone && !_handle.IsClosed;

    /// <summary>The loaded NCCL's version code (major*10000 + minor*100 + patch, e.g. 22805).</summary>
    /// <exception cref="DllNotFoundException">libnccl not found; the message lists every path tried.</exception>
    public static unsafe int Version
    {
        get
        {
            NativeLibraries.Require(NativeLibraryKind.Nccl);
            int v;
            NcclException.Check(Nccl.ncclGetVersion(&v), "ncclGetVersion");
            return v;
        }
    }

    /// <summary>"2.28.5" from <see cref="Version"/>.</summary>
    public static string VersionText
    {
        get
        {
            int v = Version;
            return v >= 10000 ? $"{v / 10000}.{v / 100 % 100}.{v % 100}" : $"{v / 1000}.{v / 100 % 10}.{v % 100}";
        }
    }

    /// <summary>A new id for a communicator (ncclGetUniqueId): made on one rank, given to all.</summary>
    public static unsafe NcclUniqueId CreateUniqueId()
    {
        NativeLibraries.Require(NativeLibraryKind.Nccl);
        NcclUniqueIdNative id;
        NcclException.Check(Nccl.ncclGetUniqueId(&id), "ncclGetUniqueId");
        return NcclUniqueId.FromNative(in id);
    }

    /// <summary>
    /// Rank <paramref name="rank"/> of <paramref name="ranks"/> on <paramref name="context"/>'s GPU
    /// (ncclCommInitRankConfig, non-blocking): returns when every rank has joined.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">ranks &lt; 1, rank outside [0, ranks), timeout not positive.</exception>
    /// <exception cref="NcclException">NCCL refused, or the ranks did not all join within <paramref name="timeout"/>
    /// (<see cref="NcclResult.Timeout"/>; nothing is left running).</exception>
    /// <exception cref="DllNotFoundException">libnccl not found; the message lists every path tried.</exception>
    public static unsafe NcclCommunicator InitRank(CudaContext context, int ranks, NcclUniqueId id, int rank, TimeSpan timeout,
        CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(id);
        NcclChecks.Init(ranks, rank, timeout);
        NativeLibraries.Require(NativeLibraryKind.Nccl);
        NcclConfigNative config = NcclConfigNative.Create(blocking: false);
        context.MakeCurrent();
        IntPtr comm = IntPtr.Zero;
        NcclResult r = Nccl.ncclCommInitRankConfig(&comm, ranks, id.ToNative(), rank, &config);
        var communicator = Adopt(context, comm, r, "ncclCommInitRankConfig", ranks, rank);
        communicator.WaitJoined(timeout, cancellation);
        return communicator;
    }

    /// <summary>
    /// One process driving one GPU per rank: rank r on <paramref name="contexts"/>[r] (one group of
    /// ncclCommInitRankConfig calls, non-blocking); returns when all have joined.
    /// </summary>
    /// <exception cref="ArgumentException">No context, or two on one device (NCCL needs one GPU per rank).</exception>
    /// <exception cref="NcclException">NCCL refused, or the init did not finish within <paramref name="timeout"/>.</exception>
    public static unsafe NcclCommunicator[] InitRanks(IReadOnlyList<CudaContext> contexts, TimeSpan timeout)
    {
        int n = CheckContexts(contexts);
        NcclChecks.Timeout(timeout);
        NcclUniqueId id = CreateUniqueId();
        NcclUniqueIdNative nativeId = id.ToNative();
        NcclConfigNative config = NcclConfigNative.Create(blocking: false);
        var comms = new NcclCommunicator[n];
        int made = 0;
        try
        {
            NcclException.Check(Nccl.ncclGroupStart(), "ncclGroupStart");
            NcclResult initFailure = NcclResult.Success;
            for (int r = 0; r < n; r++)
            {
                contexts[r].MakeCurrent();
                IntPtr comm = IntPtr.Zero;
                NcclResult result = Nccl.ncclCommInitRankConfig(&comm, n, nativeId, r, &config);
                if (comm != IntPtr.Zero) comms[made++] = new NcclCommunicator(contexts[r], comm, n, r, blocking: false);
                if (result is not (NcclResult.Success or NcclResult.InProgress) && initFailure == NcclResult.Success) initFailure = result;
            }
            NcclResult end = Nccl.ncclGroupEnd();
            NcclException.Check(initFailure, "ncclCommInitRankConfig", $"{n} ranks in one group");
            NcclException.Check(end, "ncclGroupEnd", $"init of {n} ranks");
            if (made != n) throw new NcclException("ncclCommInitRankConfig", NcclResult.InternalError, $"{made} of {n} communicators returned");
            foreach (NcclCommunicator c in comms) c.WaitJoined(timeout, CancellationToken.None);
            return comms;
        }
        catch
        {
            for (int i = 0; i < made; i++)
            {
                comms[i].Abort();
                comms[i].Dispose();
            }
            throw;
        }
    }

    /// <summary>ncclCommInitAll: blocking communicators of one process, rank r on <paramref name="contexts"/>[r]'s device.</summary>
    /// <exception cref="ArgumentException">No context, or two on one device.</exception>
    /// <exception cref="NcclException">NCCL refused.</exception>
    public static unsafe NcclCommunicator[] InitAll(IReadOnlyList<CudaContext> contexts)
    {
        int n = CheckContexts(contexts);
        NativeLibraries.Require(NativeLibraryKind.Nccl);
        var devices = new int[n];
        for (int r = 0; r < n; r++) devices[r] = contexts[r].Ordinal;
        var raw = new IntPtr[n];
        contexts[0].MakeCurrent();
        fixed (IntPtr* pComms = raw)
        fixed (int* pDevices = devices)
            NcclException.Check(Nccl.ncclCommInitAll(pComms, n, pDevices), "ncclCommInitAll", $"devices {string.Join(',', devices)}");
        var comms = new NcclCommunicator[n];
        for (int r = 0; r < n; r++) comms[r] = new NcclCommunicator(contexts[r], raw[r], n, r, blocking: true);
        return comms;
    }

    private static int CheckContexts(IReadOnlyList<CudaContext> contexts)
    {
        ArgumentNullException.ThrowIfNull(contexts);
        var ordinals = new int[contexts.Count];
        for (int r = 0; r < contexts.Count; r++)
        {
            if (contexts[r] is null) throw new ArgumentNullException(nameof(contexts), $"contexts[{r}] is null.");
            ordinals[r] = contexts[r].Ordinal;
        }
        NcclChecks.DistinctDevices(ordinals, nameof(contexts));
        return contexts.Count;
    }

    private static NcclCommunicator Adopt(CudaContext context, IntPtr comm, NcclResult result, string api, int ranks, int rank)
    {
        if (result is NcclResult.Success or NcclResult.InProgress && comm != IntPtr.Zero)
            return new NcclCommunicator(context, comm, ranks, rank, blocking: false);
        if (comm != IntPtr.Zero) Nccl.ncclCommAbort(comm);
        throw new NcclException(api, result is NcclResult.Success ? NcclResult.InternalError : result, $"rank {rank} of {ranks}");
    }

    private void WaitJoined(TimeSpan timeout, CancellationToken cancellation)
    {
        try
        {
            WaitForCalls(timeout, cancellation, "ncclCommInitRankConfig (all ranks joining)");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>
    /// Aborts the communicator now (ncclCommAbort): stops its running operations on the device and frees it; every
    /// later call throws. Idempotent. The other ranks' waits then time out (or fail) with an error.
    /// </summary>
    public void Abort() => AbortWith("Abort() was called");

    private void AbortWith(string reason)
    {
        if (_handle.IsClosed) return;
        _abortReason ??= reason;
        Context.MakeCurrent();
        _handle.TryAbort();
    }

    /// <summary>
    /// Finalizes (non-blocking communicators: waits up to <see cref="FinalizeTimeout"/> for the flush) and destroys
    /// the communicator; aborts it when the flush fails or does not finish in time. Never throws.
    /// </summary>
    public void Dispose()
    {
        if (_handle.IsClosed) return;
        if (!_handle.IsGone) Flush(this);
        _handle.Dispose();
    }

    /// <summary>Disposes several communicators of one process: every flush is started before any is waited for (a
    /// finalize completes only when all ranks have flushed).</summary>
    public static void DisposeAll(IReadOnlyList<NcclCommunicator?> communicators)
    {
        ArgumentNullException.ThrowIfNull(communicators);
        var started = new List<NcclCommunicator>();
        foreach (NcclCommunicator? c in communicators)
        {
            if (c is null || c._handle.IsClosed || c._handle.IsGone) continue;
            if (c.StartFinalize()) started.Add(c);
        }
        foreach (NcclCommunicator c in started)
        {
            if (!c.IsBlocking) c.CompleteFinalize();
        }
        foreach (NcclCommunicator? c in communicators) c?._handle.Dispose();
    }

    private static void Flush(NcclCommunicator c)
    {
        if (c.StartFinalize() && !c.IsBlocking) c.CompleteFinalize();
    }

    private bool StartFinalize()
    {
        Context.MakeCurrent();
        if (IsBlocking)
        {
            _handle.MarkFinalized(); // ncclCommDestroy of a blocking communicator flushes it itself
            return true;
        }
        NcclResult r = Nccl.ncclCommFinalize(_handle.DangerousGetHandle());
        if (r is NcclResult.Success or NcclResult.InProgress) return true;
        AbortWith($"ncclCommFinalize failed: {NcclException.NameOf(r)}");
        return false;
    }

    private void CompleteFinalize()
    {
        try
        {
            WaitForCalls(FinalizeTimeout, CancellationToken.None, "ncclCommFinalize");
            _handle.MarkFinalized();
        }
        catch (NcclException)
        {
            // NOTE: the wait aborted the communicator already; Dispose must not throw.
        }
    }

    /// <summary>The raw handle for a call; throws when disposed or aborted.</summary>
    private IntPtr Live()
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        if (_handle.IsGone)
            throw new InvalidOperationException(
                $"The NCCL communicator (rank {Rank} of {Size}) was aborted ({_abortReason ?? "by its owner"}): make a new communicator.");
        return _handle.DangerousGetHandle();
    }

    public override string ToString() => $"NCCL rank {Rank} of {Size} on {Context.Name} (device {Context.Ordinal})";

    private static long Deadline(TimeSpan timeout) =>
        Stopwatch.GetTimestamp() + (long)Math.Min(long.MaxValue / 4, timeout.TotalSeconds * Stopwatch.Frequency);
}
