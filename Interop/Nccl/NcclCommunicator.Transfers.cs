using System.Diagnostics;
using MoeNative.Interop.Native;

namespace MoeNative.Interop;

// Transfers, groups and the polled waits of a communicator.
public sealed partial class NcclCommunicator
{
    /// <summary>The NCCL data type of a storage dtype.</summary>
    public static NcclDataType DataTypeOf(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => NcclDataType.BFloat16,
        ScalarType.Float16 => NcclDataType.Float16,
        ScalarType.Float32 => NcclDataType.Float32,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Unknown storage dtype."),
    };

    // ==== groups ====================================================================================================

    /// <summary>ncclGroupStart: the calls until <see cref="GroupEnd"/> on this thread are issued together.</summary>
    public static void GroupStart()
    {
        NativeLibraries.Require(NativeLibraryKind.Nccl);
        NcclException.Check(Nccl.ncclGroupStart(), "ncclGroupStart");
    }

    /// <summary>ncclGroupEnd: issues the group. With non-blocking communicators it may return before the calls are
    /// enqueued: <see cref="WaitForCalls"/> on each communicator of the group before its next call.</summary>
    public static void GroupEnd()
    {
        NativeLibraries.Require(NativeLibraryKind.Nccl);
        NcclException.Check(Nccl.ncclGroupEnd(), "ncclGroupEnd");
    }

    // ==== transfers =================================================================================================

    /// <summary>ncclSend: <paramref name="count"/> elements of <paramref name="buffer"/> to rank <paramref name="peer"/>
    /// (may be this rank) on <paramref name="stream"/>; the peer posts the matching <see cref="Recv"/>.</summary>
    /// <exception cref="ArgumentException">count &lt; 0, peer outside [0, Size), a buffer too short or null, a stream of another context.</exception>
    public void Send(DeviceRange buffer, long count, NcclDataType type, int peer, CudaStream stream)
    {
        NcclChecks.Transfer(buffer, count, type, peer, Size, nameof(buffer));
        IntPtr comm = Begin(stream);
        NcclException.Check(Nccl.ncclSend(buffer.Pointer, (nuint)count, type, peer, comm, stream.Handle), "ncclSend",
            $"{count} x {type}, rank {Rank} to {peer}");
        GC.KeepAlive(stream);
    }

    /// <summary>ncclRecv: <paramref name="count"/> elements into <paramref name="buffer"/> from rank <paramref name="peer"/>.</summary>
    /// <exception cref="ArgumentException">As <see cref="Send"/>.</exception>
    public void Recv(DeviceRange buffer, long count, NcclDataType type, int peer, CudaStream stream)
    {
        NcclChecks.Transfer(buffer, count, type, peer, Size, nameof(buffer));
        IntPtr comm = Begin(stream);
        NcclException.Check(Nccl.ncclRecv(buffer.Pointer, (nuint)count, type, peer, comm, stream.Handle), "ncclRecv",
            $"{count} x {type}, rank {Rank} from {peer}");
        GC.KeepAlive(stream);
    }

    /// <summary>ncclAllReduce: <paramref name="receive"/> = op over ranks of <paramref name="send"/> (in place when equal).</summary>
    /// <exception cref="ArgumentException">count &lt; 0, an unknown op, a buffer too short or null, a stream of another context.</exception>
    public void AllReduce(DeviceRange send, DeviceRange receive, long count, NcclDataType type, NcclReduceOp op, CudaStream stream)
    {
        NcclChecks.AllReduce(send, receive, count, type, op);
        IntPtr comm = Begin(stream);
        NcclException.Check(Nccl.ncclAllReduce(send.Pointer, receive.Pointer, (nuint)count, type, op, comm, stream.Handle),
            "ncclAllReduce", $"{count} x {type} {op}, rank {Rank} of {Size}");
        GC.KeepAlive(stream);
    }

    private IntPtr Begin(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        Context.EnsureSameContext(stream.Context, nameof(stream), ToString());
        IntPtr comm = Live();
        Context.MakeCurrent();
        return comm;
    }

    // ==== errors and waits ==========================================================================================

    /// <summary>ncclCommGetAsyncError: <see cref="NcclResult.Success"/>, <see cref="NcclResult.InProgress"/> (a
    /// non-blocking call still running) or the error that stopped the communicator.</summary>
    public unsafe NcclResult AsyncError()
    {
        IntPtr comm = Live();
        NcclResult state;
        NcclException.Check(Nccl.ncclCommGetAsyncError(comm, &state), "ncclCommGetAsyncError");
        return state;
    }

    /// <summary>
    /// Polls until this communicator's last calls (init, a group, finalize) are no longer in progress. On an
    /// asynchronous error, at the timeout, or when <paramref name="cancellation"/> fires, aborts the communicator and
    /// throws.
    /// </summary>
    /// <exception cref="NcclException">The communicator failed, or <see cref="NcclResult.Timeout"/>.</exception>
    /// <exception cref="OperationCanceledException">Cancelled (another rank failed).</exception>
    public void WaitForCalls(TimeSpan timeout, CancellationToken cancellation = default, string what = "the last NCCL calls")
    {
        NcclChecks.Timeout(timeout);
        long start = Stopwatch.GetTimestamp(), deadline = Deadline(timeout);
        while (true)
        {
            NcclResult state = AsyncError();
            if (state == NcclResult.Success) return;
            if (state != NcclResult.InProgress) throw Failed(what, state);
            Pause(start, deadline, timeout, cancellation, what);
        }
    }

    /// <summary>
    /// Polls until <paramref name="done"/> (recorded after this rank's NCCL work on its stream) completes, checking the
    /// communicator for asynchronous errors meanwhile; aborts and throws as <see cref="WaitForCalls"/>. This is how a
    /// host waits for an exchange whose peer may have failed (an NCCL kernel waiting for a peer never finishes).
    /// </summary>
    public void WaitFor(CudaEvent done, TimeSpan timeout, CancellationToken cancellation = default, string what = "the exchange")
    {
        ArgumentNullException.ThrowIfNull(done);
        NcclChecks.Timeout(timeout);
        Context.EnsureSameContext(done.Context, nameof(done), ToString());
        long start = Stopwatch.GetTimestamp(), deadline = Deadline(timeout);
        while (true)
        {
            NcclResult state = AsyncError();
            if (state is not (NcclResult.Success or NcclResult.InProgress)) throw Failed(what, state);
            if (state == NcclResult.Success && done.IsComplete) return;
            Pause(start, deadline, timeout, cancellation, what);
        }
    }

    private NcclException Failed(string what, NcclResult state)
    {
        AbortWith($"{what} failed with {NcclException.NameOf(state)}");
        return new NcclException("ncclCommGetAsyncError", state, $"{what}, rank {Rank} of {Size}; the communicator was aborted");
    }

    private void Pause(long start, long deadline, TimeSpan timeout, CancellationToken cancellation, string what)
    {
        if (cancellation.IsCancellationRequested)
        {
            AbortWith($"{what} was cancelled");
            throw new OperationCanceledException(
                $"{what} on rank {Rank} of {Size} was cancelled (another rank failed); the communicator was aborted.", cancellation);
        }
        long now = Stopwatch.GetTimestamp();
        if (now > deadline)
        {
            AbortWith($"{what} timed out");
            throw new NcclException(what, NcclResult.Timeout,
                $"rank {Rank} of {Size}: not complete after {timeout.TotalSeconds:0.###} s; a peer rank failed, exited or never made " +
                "the matching call. The communicator was aborted");
        }
        // NOTE: an exchange usually completes in microseconds: yield first, sleep only once it is clearly slow.
        if (now - start < Stopwatch.Frequency / 500) Thread.Yield();
        else Thread.Sleep(1);
    }
}
