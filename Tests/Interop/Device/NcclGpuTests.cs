using System.Diagnostics;
using System.Runtime.InteropServices;
using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Interop.Native;
using MoeNative.Reference;
using MoeNative.Tests.Support;

namespace MoeNative.Tests.Interop.Device;

/// <summary>
/// The NCCL wrapper on the GPU: one-rank all-reduce / send / recv move the exact bytes; ncclCommInitAll; abort makes
/// every later call fail; a missing peer or a cancellation ends a wait with an error within its timeout (a watchdog
/// fails the test instead of letting it hang). Multi-rank tests need as many GPUs as ranks (Inconclusive otherwise).
/// Inconclusive without a GPU or without libnccl (MOENATIVE_NCCL, or pip's nvidia-nccl-cu13 under the python3 on PATH).
/// </summary>
[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class NcclGpuTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>The shared context, or Inconclusive (no GPU, or no libnccl: the reason with every path tried).</summary>
    internal static CudaContext RequireNccl()
    {
        CudaContext ctx = GpuTest.RequireContext();
        if (!NativeLibraries.TryRequire(NativeLibraryKind.Nccl, out _, out string? failure))
            Assert.Inconclusive($"No libnccl: {failure}");
        return ctx;
    }

    /// <summary>Contexts of devices 0..n-1, or Inconclusive saying how many GPUs the test needs.</summary>
    internal static CudaContext[] RequireGpus(int n)
    {
        RequireNccl();
        int available = ExpertParallelDevices.Count();
        if (available < n) Assert.Inconclusive($"This test needs {n} GPUs (one per rank); this machine has {available}.");
        return Enumerable.Range(0, n).Select(CudaContext.Create).ToArray();
    }

    /// <summary>Runs <paramref name="body"/> on a thread and fails the test if it does not end within
    /// <paramref name="limit"/> (a hang is a failure, not a stuck run).</summary>
    internal static void WithinWatchdog(TimeSpan limit, Action body)
    {
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try { body(); }
            catch (Exception e) { error = e; }
        }) { IsBackground = true };
        thread.Start();
        if (!thread.Join(limit)) Assert.Fail($"Did not finish within {limit.TotalSeconds} s: a hang.");
        if (error is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(error).Throw();
    }

    /// <summary>Runs <paramref name="rankWork"/>(r) for every rank at once, one thread each (NCCL ranks of one process
    /// wait on each other: a thread pool that starts fewer would deadlock); rethrows the first error.</summary>
    internal static void OnRankThreads(int ranks, Action<int> rankWork)
    {
        var errors = new Exception?[ranks];
        Thread[] threads = Enumerable.Range(0, ranks).Select(r => new Thread(() =>
        {
            try { rankWork(r); }
            catch (Exception e) { errors[r] = e; }
        }) { IsBackground = true }).ToArray();
        foreach (Thread t in threads) t.Start();
        foreach (Thread t in threads) t.Join();
        if (errors.FirstOrDefault(e => e is not null) is { } first)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(first).Throw();
    }

    [TestMethod]
    public void Version_IsNcclTwoSeventeenOrNewer()
    {
        RequireNccl();
        int version = NcclCommunicator.Version;
        Console.WriteLine($"NCCL {NcclCommunicator.VersionText} ({version})");
        Assert.IsGreaterThanOrEqualTo(21700, version, "the ncclConfig_t prefix we pass is NCCL 2.17's");
    }

    [TestMethod]
    public void OneRank_AllReduceSendRecv_MoveTheExactBytes()
    {
        CudaContext ctx = RequireNccl();
        NcclCommunicator comm = NcclCommunicator.InitRanks([ctx], Timeout)[0];
        try
        {
            Assert.AreEqual((0, 1), (comm.Rank, comm.Size));
            Assert.IsFalse(comm.IsBlocking);
            int seed = TestSeeds.Stable(nameof(OneRank_AllReduceSendRecv_MoveTheExactBytes));
            float[] values = TensorRandom.Normal(4099, seed);
            using var stream = new CudaStream(ctx);
            using var source = DeviceBuffer<float>.FromHost(ctx, values);
            using var summed = new DeviceBuffer<float>(ctx, values.Length);
            using var received = new DeviceBuffer<float>(ctx, values.Length);
            using var done = new CudaEvent(ctx);
            summed.FillBytes(0xFF);
            received.FillBytes(0xFF);
            ctx.Synchronize();

            comm.AllReduce(source, summed, values.Length, NcclDataType.Float32, NcclReduceOp.Sum, stream);
            comm.WaitForCalls(Timeout);
            NcclCommunicator.GroupStart();
            comm.Send(source, values.Length, NcclDataType.Float32, 0, stream);
            comm.Recv(received, values.Length, NcclDataType.Float32, 0, stream);
            NcclCommunicator.GroupEnd();
            comm.WaitForCalls(Timeout);
            done.Record(stream);
            comm.WaitFor(done, Timeout);
            Assert.AreEqual(NcclResult.Success, comm.AsyncError());

            CollectionAssert.AreEqual(values, summed.ToArray(), $"seed {seed}: the sum over one rank is the input");
            CollectionAssert.AreEqual(values, received.ToArray(), $"seed {seed}: send to self, receive from self");
        }
        finally
        {
            comm.Dispose();
        }
    }

    [TestMethod]
    public void InitAll_OneDevice_MakesABlockingCommunicatorThatReduces()
    {
        CudaContext ctx = RequireNccl();
        NcclCommunicator[] comms = NcclCommunicator.InitAll([ctx]);
        try
        {
            Assert.HasCount(1, comms);
            Assert.IsTrue(comms[0].IsBlocking);
            ushort[] bits = Enumerable.Range(0, 1000).Select(i => BFloat16.RoundToBits(i * 0.25f - 7f)).ToArray();
            using var stream = new CudaStream(ctx);
            using var buffer = DeviceBuffer<ushort>.FromHost(ctx, bits);
            comms[0].AllReduce(buffer, buffer, bits.Length, NcclDataType.BFloat16, NcclReduceOp.Sum, stream); // in place
            stream.Synchronize();
            CollectionAssert.AreEqual(bits, buffer.ToArray());
        }
        finally
        {
            NcclCommunicator.DisposeAll(comms);
        }
    }

    [TestMethod]
    public void Abort_ThenEveryCallThrows_AndDisposeIsQuiet()
    {
        CudaContext ctx = RequireNccl();
        NcclCommunicator comm = NcclCommunicator.InitRanks([ctx], Timeout)[0];
        using var stream = new CudaStream(ctx);
        using var buffer = new DeviceBuffer<float>(ctx, 16);
        comm.Abort();
        Assert.IsTrue(comm.IsAborted);
        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => comm.Send(buffer, 16, NcclDataType.Float32, 0, stream));
        Assert.Contains("aborted", ex.Message);
        Assert.ThrowsExactly<InvalidOperationException>(() => comm.AsyncError());
        comm.Abort(); // idempotent
        comm.Dispose();
        Assert.ThrowsExactly<ObjectDisposedException>(() => comm.AsyncError());
    }

    [TestMethod]
    public void InitRank_PeerNeverJoins_TimesOutWithAnError()
    {
        CudaContext ctx = RequireNccl();
        NcclUniqueId id = NcclCommunicator.CreateUniqueId();
        TimeSpan timeout = TimeSpan.FromSeconds(3);
        WithinWatchdog(TimeSpan.FromSeconds(60), () =>
        {
            var clock = Stopwatch.StartNew();
            var ex = Assert.ThrowsExactly<NcclException>(() => NcclCommunicator.InitRank(ctx, ranks: 2, id, rank: 0, timeout));
            Assert.AreEqual(NcclResult.Timeout, ex.Result, ex.Message);
            Assert.Contains("rank 0 of 2", ex.Message);
            Assert.Contains("aborted", ex.Message);
            Assert.IsGreaterThanOrEqualTo(timeout.TotalSeconds * 0.9, clock.Elapsed.TotalSeconds, "waited the timeout");
        });
    }

    [TestMethod]
    public void InitRank_Cancelled_AbortsAndThrows()
    {
        CudaContext ctx = RequireNccl();
        NcclUniqueId id = NcclCommunicator.CreateUniqueId();
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
        WithinWatchdog(TimeSpan.FromSeconds(60), () =>
        {
            var ex = Assert.ThrowsExactly<OperationCanceledException>(() =>
                NcclCommunicator.InitRank(ctx, ranks: 2, id, rank: 0, TimeSpan.FromSeconds(30), cancel.Token));
            Assert.Contains("aborted", ex.Message);
        });
    }

    [TestMethod]
    [DataRow(2)]
    [DataRow(4)]
    [DataRow(8)]
    public void MultiRank_RingSendRecvAndAllReduce(int ranks)
    {
        CudaContext[] contexts = RequireGpus(ranks);
        NcclCommunicator[] comms = NcclCommunicator.InitRanks(contexts, Timeout);
        try
        {
            const int n = 1 << 16;
            var results = new float[ranks][];
            var sums = new float[ranks][];
            WithinWatchdog(TimeSpan.FromSeconds(120), () => OnRankThreads(ranks, r =>
            {
                CudaContext ctx = contexts[r];
                ctx.MakeCurrent();
                using var stream = new CudaStream(ctx);
                using var mine = DeviceBuffer<float>.FromHost(ctx, Enumerable.Repeat((float)(r + 1), n).ToArray());
                using var fromLeft = new DeviceBuffer<float>(ctx, n);
                using var done = new CudaEvent(ctx);
                NcclCommunicator.GroupStart();
                comms[r].Send(mine, n, NcclDataType.Float32, (r + 1) % ranks, stream);
                comms[r].Recv(fromLeft, n, NcclDataType.Float32, (r + ranks - 1) % ranks, stream);
                NcclCommunicator.GroupEnd();
                comms[r].WaitForCalls(Timeout);
                comms[r].AllReduce(mine, mine, n, NcclDataType.Float32, NcclReduceOp.Sum, stream);
                comms[r].WaitForCalls(Timeout);
                done.Record(stream);
                comms[r].WaitFor(done, Timeout);
                results[r] = fromLeft.ToArray();
                sums[r] = mine.ToArray();
            }));
            float total = ranks * (ranks + 1) / 2f;
            for (int r = 0; r < ranks; r++)
            {
                Assert.IsTrue(results[r].All(v => v == (r + ranks - 1) % ranks + 1), $"rank {r} got its left neighbour's rows");
                Assert.IsTrue(sums[r].All(v => v == total), $"rank {r}: sum over ranks");
            }
        }
        finally
        {
            NcclCommunicator.DisposeAll(comms);
            foreach (CudaContext c in contexts) c.Dispose();
        }
    }
}
