using MoeNative.Blocks;

namespace MoeNative.Tests.Blocks;

/// <summary>The fused block's one-thread-at-a-time guard, without a GPU: deterministic (the first thread holds the
/// entry while the second tries).</summary>
[TestClass]
public sealed class BlockEntryGuardTests
{
    [TestMethod]
    public void SecondThread_IsRefused_SameThreadReenters_ReleasedAfterwards()
    {
        var guard = new BlockEntryGuard();
        var owner = new object();
        using (guard.Enter(owner))
        {
            using (guard.Enter(owner)) { } // the same thread re-enters (host API calling the device API)
            Exception? seen = OnOtherThread(() => guard.Enter(owner).Dispose());
            Assert.IsInstanceOfType<InvalidOperationException>(seen, "a second thread is refused");
            StringAssert.Contains(seen.Message, "in use by another thread");
            StringAssert.Contains(seen.Message, "one block per thread");
        }
        Assert.IsNull(OnOtherThread(() => guard.Enter(owner).Dispose()), "released: another thread may enter now");
    }

    // NOTE: a dedicated thread, not Task.Run(...).Result, which may run the task inline on the waiting thread.
    private static Exception? OnOtherThread(Action action)
    {
        Exception? seen = null;
        var thread = new Thread(() =>
        {
            try { action(); }
            catch (Exception e) { seen = e; }
        });
        thread.Start();
        thread.Join();
        return seen;
    }
}
