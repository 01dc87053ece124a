using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>
/// An <c>ncclComm_t</c>. Released once: with <c>ncclCommDestroy</c> after an orderly finalize
/// (<see cref="MarkFinalized"/>), else with <c>ncclCommAbort</c>, which never waits for peer ranks (also the
/// finalizer's path); <see cref="TryAbort"/> aborts it early (the later release then frees nothing more).
/// </summary>
internal sealed class SafeNcclCommHandle(IntPtr comm, SafeCudaContextHandle context) : CudaChildHandle(comm, context)
{
    private const int Live = 0, Finalized = 1, Gone = 2;
    private int _state;

    /// <summary>True once aborted (or released).</summary>
    public bool IsGone => Volatile.Read(ref _state) == Gone;

    /// <summary>The communicator was flushed (ncclCommFinalize completed): release with ncclCommDestroy.</summary>
    public void MarkFinalized() => Interlocked.CompareExchange(ref _state, Finalized, Live);

    /// <summary>ncclCommAbort now (first caller only); true when this call aborted it.</summary>
    public bool TryAbort()
    {
        if (Interlocked.Exchange(ref _state, Gone) == Gone) return false;
        Nccl.ncclCommAbort(handle);
        return true;
    }

    protected override bool Destroy(IntPtr value)
    {
        int previous = Interlocked.Exchange(ref _state, Gone);
        if (previous == Gone) return true;
        NcclResult r = previous == Finalized ? Nccl.ncclCommDestroy(value) : Nccl.ncclCommAbort(value);
        return r is NcclResult.Success or NcclResult.InProgress;
    }
}
