using System.Diagnostics;
using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;
using MoeNative.Tests.Interop.Device;
using MoeNative.Tests.Support;
using static MoeNative.Tests.Blocks.ExpertParallel.ExpertParallelGpuSupport;

namespace MoeNative.Tests.Blocks.ExpertParallel;

/// <summary>
/// The expert-parallel block on the GPU. One rank on one GPU must equal <see cref="Qwen3MoeFusedBlock"/> (grouped
/// path: Decode = Off) bitwise, output and all five gradients, under its own router and under a skewed routing given to
/// both. With N ≥ 2 GPUs (Inconclusive otherwise, saying how many are needed), N = 2, 4, 8 ranks must equal the fused
/// block on one GPU over all tokens (shared routing; the scaled tolerance rule), with random and skewed routing and a
/// rank without tokens; a rank that fails or never calls surfaces as an error on the others within the timeout.
/// Outputs are poisoned (NaN) first; inputs are drawn from a printed seed. Inconclusive without a GPU or libnccl.
/// </summary>
[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class ExpertParallelGpuTests
{
    private static readonly TimeSpan Watchdog = TimeSpan.FromSeconds(300);

    // ==== one rank: bitwise the fused block ========================================================================

    [TestMethod]
    [DataRow("tiny", "bf16", 16, "router")]
    [DataRow("tiny", "fp32", 5, "router")]
    [DataRow("small", "bf16", 37, "router")]
    [DataRow("small", "fp16", 300, "router")]
    [DataRow("small", "fp32", 64, "router")]
    [DataRow("small", "bf16", 100, "skewed")]
    [DataRow("small", "fp16", 1500, "router")] // the router dW split: G = 6 groups, the first of 1500 mod 256 = 220 rows
    [DataRow("qwen3-30b-a3b", "bf16", 128, "router")]
    [DataRow("qwen3-30b-a3b", "fp16", 512, "router")]
    [DataRow("qwen3-30b-a3b", "bf16", 1024, "skewed")]
    [DataRow("qwen3-30b-a3b", "bf16", 4096, "router")]
    public void OneRank_EqualsFusedBlock_Bitwise(string preset, string dtype, int tokens, string routing)
    {
        ScalarType dt = Dtype(dtype);
        switch (dt)
        {
            case ScalarType.BFloat16: OneRank<BFloat16>(preset, dt, tokens, routing); break;
            case ScalarType.Float16: OneRank<Half>(preset, dt, tokens, routing); break;
            default: OneRank<float>(preset, dt, tokens, routing); break;
        }
    }

    private static void OneRank<T>(string preset, ScalarType dt, int tokens, string routing) where T : unmanaged
    {
        CudaContext ctx = NcclGpuTests.RequireNccl();
        MoeConfig c = MoeConfig.Preset(preset);
        int seed = TestSeeds.Stable(nameof(OneRank_EqualsFusedBlock_Bitwise), preset, dt, tokens, routing);
        Console.WriteLine($"seed {seed}");
        MoeWeights w = MoeWeights.Random(c, seed, dt);
        long th = (long)tokens * c.HiddenSize;
        using DeviceBuffer<T> x = Upload<T>(ctx, TensorRandom.Normal(th, seed + 1, 1f, dt));
        using DeviceBuffer<T> dY = Upload<T>(ctx, TensorRandom.Normal(th, seed + 2, 1f, dt));
        DeviceRouting<T>? given = null;
        if (routing == "skewed")
        {
            // every token to the first k + 1 experts: most experts get no rows
            (int[] sel, float[] rw) = Routing(tokens, c.TopK, Enumerable.Range(0, c.TopK + 1).ToArray(), seed + 3, dt);
            given = new DeviceRouting<T>(DeviceBuffer<int>.FromHost(ctx, sel), Upload<T>(ctx, rw));
        }
        using var yFused = new DeviceBuffer<T>(ctx, th);
        using var yEp = new DeviceBuffer<T>(ctx, th);
        yFused.FillBytes(0xFF);
        yEp.FillBytes(0xFF);
        DeviceGradients<T> gFused = PoisonedGradients<T>(ctx, c, tokens, c.NumExperts), gEp = PoisonedGradients<T>(ctx, c, tokens, c.NumExperts);
        try
        {
            ctx.Synchronize();
            using (var fused = new Qwen3MoeFusedBlock(ctx, w, dt, new FusedBlockOptions { Decode = DecodeMode.Off }))
            using (var s = new CudaStream(ctx))
            {
                fused.Forward(s, x, yFused, tokens, given);
                fused.Backward(s, dY, gFused);
                s.Synchronize();
            }
            using (ExpertParallelGroup group = ExpertParallelGroup.Create([ctx], w, dt))
            {
                NcclGpuTests.WithinWatchdog(Watchdog, () => group.Run((_, block, s) =>
                {
                    block.Forward(s, x, yEp, tokens, given);
                    block.Backward(s, dY, gEp);
                }));
                Assert.AreEqual(tokens * c.TopK, group.Blocks[0].LastPlan.TotalReceived, "one rank receives all its own rows");
            }
            AssertBitwise("output", yFused, yEp, th, seed);
            AssertBitwise("grad hidden_states", gFused.HiddenStates, gEp.HiddenStates, th, seed);
            AssertBitwise("grad gate", gFused.Gate, gEp.Gate, c.GateElements, seed);
            AssertBitwise("grad gate_up_proj", gFused.GateUpProj, gEp.GateUpProj, c.GateUpProjElements, seed);
            AssertBitwise("grad down_proj", gFused.DownProj, gEp.DownProj, c.DownProjElements, seed);
        }
        finally
        {
            Dispose(gFused);
            Dispose(gEp);
            given?.Selected.Dispose();
            given?.Weights.Dispose();
        }
    }

    private static void AssertBitwise<T>(string name, DeviceBuffer<T> expected, DeviceBuffer<T> actual, long count, int seed) where T : unmanaged
    {
        float[] values = Download(actual, count);
        int nan = values.Count(float.IsNaN);
        Assert.AreEqual(0, nan, $"seed {seed}: {name}: {nan} elements unwritten (still the NaN poison) or NaN");
        byte[] e = Bits(expected, count), a = Bits(actual, count);
        int elementSize = e.Length / (int)Math.Max(1, count);
        int first = Enumerable.Range(0, e.Length).FirstOrDefault(i => e[i] != a[i], -1);
        if (first >= 0)
        {
            int differing = Enumerable.Range(0, (int)count).Count(i => !e.AsSpan(i * elementSize, elementSize).SequenceEqual(a.AsSpan(i * elementSize, elementSize)));
            Assert.Fail($"seed {seed}: {name} differs from the fused block in {differing} of {count} elements; first at {first / elementSize}: " +
                        $"fused {Download(expected, count)[first / elementSize]}, expert-parallel {values[first / elementSize]}");
        }
    }

    [TestMethod]
    public void OneRank_NoTokens_WeightGradientsAreZero()
    {
        CudaContext ctx = NcclGpuTests.RequireNccl();
        MoeConfig c = MoeConfig.Preset("tiny");
        MoeWeights w = MoeWeights.Random(c, 7, ScalarType.BFloat16);
        using var x = new DeviceBuffer<BFloat16>(ctx, 1);
        using var y = new DeviceBuffer<BFloat16>(ctx, 1);
        DeviceGradients<BFloat16> g = PoisonedGradients<BFloat16>(ctx, c, 0, c.NumExperts);
        try
        {
            ctx.Synchronize();
            using ExpertParallelGroup group = ExpertParallelGroup.Create([ctx], w, ScalarType.BFloat16);
            NcclGpuTests.WithinWatchdog(Watchdog, () => group.Run((_, block, s) =>
            {
                block.Forward(s, x, y, 0);
                block.Backward(s, x, g);
            }));
            Assert.AreEqual(0, group.Blocks[0].CountExpertsHit());
            foreach ((string name, DeviceBuffer<BFloat16> b) in (ValueTuple<string, DeviceBuffer<BFloat16>>[])[("gate", g.Gate), ("gate_up_proj", g.GateUpProj), ("down_proj", g.DownProj)])
                Assert.IsTrue(Bits(b, b.Length).All(v => v == 0), $"grad {name} of T = 0 is zero");
        }
        finally
        {
            Dispose(g);
        }
    }

    [TestMethod]
    public void OneRank_WorkThrows_RunReportsItAndRefusesTheGroup()
    {
        CudaContext ctx = NcclGpuTests.RequireNccl();
        MoeWeights w = MoeWeights.Random(MoeConfig.Preset("tiny"), 3, ScalarType.BFloat16);
        using ExpertParallelGroup group = ExpertParallelGroup.Create([ctx], w, ScalarType.BFloat16);
        var ex = Assert.ThrowsExactly<AggregateException>(() => group.Run((_, _, _) => throw new InvalidOperationException("rank work failed")));
        Assert.Contains("rank 0", ex.Message);
        Assert.IsInstanceOfType<InvalidOperationException>(ex.InnerExceptions[0]);
        Assert.ThrowsExactly<InvalidOperationException>(() => group.Run((_, _, _) => { }));
    }

    // ==== several ranks (needs as many GPUs) ======================================================================

    [TestMethod]
    [DataRow(2, "random")]
    [DataRow(2, "skewed")]
    [DataRow(2, "empty-rank")]
    [DataRow(4, "random")]
    [DataRow(4, "skewed")]
    [DataRow(4, "empty-rank")]
    [DataRow(8, "random")]
    [DataRow(8, "skewed")]
    [DataRow(8, "empty-rank")]
    public void MultiRank_EqualsTheFusedBlockOnOneGpu(int ranks, string routing)
    {
        CudaContext[] contexts = NcclGpuTests.RequireGpus(ranks);
        try
        {
            MultiRank<BFloat16>(contexts, MoeConfig.Preset("small"), ScalarType.BFloat16, routing);
        }
        finally
        {
            foreach (CudaContext c in contexts) c.Dispose();
        }
    }

    private static void MultiRank<T>(CudaContext[] contexts, MoeConfig c, ScalarType dt, string routing) where T : unmanaged
    {
        int n = contexts.Length, h = c.HiddenSize, k = c.TopK;
        int seed = TestSeeds.Stable(nameof(MultiRank_EqualsTheFusedBlockOnOneGpu), n, routing);
        Console.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        int[] tokens = Enumerable.Range(0, n).Select(r => routing == "empty-rank" && r == 1 ? 0 : rng.Next(1, 97)).ToArray();
        int[] start = new int[n];
        for (int r = 1; r < n; r++) start[r] = start[r - 1] + tokens[r - 1];
        int total = tokens.Sum();
        var partition = new ExpertPartition(c.NumExperts, n);
        int[] pool = routing == "skewed" ? Enumerable.Range(0, partition.ExpertCount(0)).ToArray() : Enumerable.Range(0, c.NumExperts).ToArray();
        (int[] sel, float[] rw) = Routing(total, k, pool, seed + 3, dt);
        MoeWeights w = MoeWeights.Random(c, seed, dt);
        float[] x = TensorRandom.Normal((long)total * h, seed + 1, 1f, dt), dY = TensorRandom.Normal((long)total * h, seed + 2, 1f, dt);

        // the reference: the fused block on GPU 0 over all tokens, same routing
        float[] yRef, dXRef, dGateRef, dGateUpRef, dDownRef;
        CudaContext c0 = contexts[0];
        c0.MakeCurrent();
        using (DeviceBuffer<T> xAll = Upload<T>(c0, x), dYAll = Upload<T>(c0, dY), yAll = new(c0, (long)total * h))
        using (var selAll = DeviceBuffer<int>.FromHost(c0, sel))
        using (DeviceBuffer<T> wAll = Upload<T>(c0, rw))
        using (var fused = new Qwen3MoeFusedBlock(c0, w, dt, new FusedBlockOptions { Decode = DecodeMode.Off }))
        using (var s = new CudaStream(c0))
        {
            DeviceGradients<T> g = PoisonedGradients<T>(c0, c, total, c.NumExperts);
            c0.Synchronize();
            fused.Forward(s, xAll, yAll, total, new DeviceRouting<T>(selAll, wAll));
            fused.Backward(s, dYAll, g);
            s.Synchronize();
            (yRef, dXRef, dGateRef) = (Download(yAll, (long)total * h), Download(g.HiddenStates, (long)total * h), Download(g.Gate, c.GateElements));
            (dGateUpRef, dDownRef) = (Download(g.GateUpProj, c.GateUpProjElements), Download(g.DownProj, c.DownProjElements));
            Dispose(g);
        }

        // the expert-parallel layer: rank r has tokens [start[r], start[r] + tokens[r])
        var inputs = new (DeviceBuffer<T> X, DeviceBuffer<T> DY, DeviceBuffer<T> Y, DeviceRouting<T> Routing, DeviceGradients<T> Grads)[n];
        using ExpertParallelGroup group = ExpertParallelGroup.Create(contexts, w, dt);
        try
        {
            for (int r = 0; r < n; r++)
            {
                CudaContext ctx = contexts[r];
                ctx.MakeCurrent();
                long from = (long)start[r] * h, len = Math.Max(1L, (long)tokens[r] * h);
                float[] Rows(float[] all) => tokens[r] == 0 ? new float[1] : all.AsSpan((int)from, (int)len).ToArray();
                int[] selR = tokens[r] == 0 ? new int[1] : sel.AsSpan(start[r] * k, tokens[r] * k).ToArray();
                float[] wR = tokens[r] == 0 ? new float[1] : rw.AsSpan(start[r] * k, tokens[r] * k).ToArray();
                var y = new DeviceBuffer<T>(ctx, len);
                y.FillBytes(0xFF);
                inputs[r] = (Upload<T>(ctx, Rows(x)), Upload<T>(ctx, Rows(dY)), y,
                    new DeviceRouting<T>(DeviceBuffer<int>.FromHost(ctx, selR), Upload<T>(ctx, wR)),
                    PoisonedGradients<T>(ctx, c, tokens[r], partition.ExpertCount(r)));
                ctx.Synchronize();
            }
            NcclGpuTests.WithinWatchdog(Watchdog, () => group.Run((r, block, s) =>
            {
                block.Forward(s, inputs[r].X, inputs[r].Y, tokens[r], inputs[r].Routing);
                block.Backward(s, inputs[r].DY, inputs[r].Grads);
            }));

            double tol = TensorTolerance.For(dt);
            byte[] gate0 = Bits(inputs[0].Grads.Gate, c.GateElements);
            for (int r = 0; r < n; r++)
            {
                long from = (long)start[r] * h, th = (long)tokens[r] * h;
                int first = partition.FirstExpert(r), el = partition.ExpertCount(r);
                long gu = 2L * c.IntermediateSize * h, dn = (long)h * c.IntermediateSize;
                Check($"rank {r} output", Download(inputs[r].Y, th), yRef.AsSpan((int)from, (int)th), tol, seed);
                Check($"rank {r} grad hidden_states", Download(inputs[r].Grads.HiddenStates, th), dXRef.AsSpan((int)from, (int)th), tol, seed);
                Check($"rank {r} grad gate", Download(inputs[r].Grads.Gate, c.GateElements), dGateRef, tol, seed);
                Check($"rank {r} grad gate_up_proj", Download(inputs[r].Grads.GateUpProj, el * gu), dGateUpRef.AsSpan((int)(first * gu), (int)(el * gu)), tol, seed);
                Check($"rank {r} grad down_proj", Download(inputs[r].Grads.DownProj, el * dn), dDownRef.AsSpan((int)(first * dn), (int)(el * dn)), tol, seed);
                CollectionAssert.AreEqual(gate0, Bits(inputs[r].Grads.Gate, c.GateElements), $"rank {r}: the all-reduced router gradient equals rank 0's");
            }
            if (routing == "skewed")
                for (int r = 1; r < n; r++) Assert.AreEqual(0, group.Blocks[r].LastPlan.TotalReceived, $"rank {r} holds no routed expert");
        }
        finally
        {
            foreach (var i in inputs)
            {
                if (i.X is null) continue;
                i.X.Dispose();
                i.DY.Dispose();
                i.Y.Dispose();
                i.Routing.Selected.Dispose();
                i.Routing.Weights.Dispose();
                Dispose(i.Grads);
            }
        }
    }

    private static void Check(string name, float[] actual, ReadOnlySpan<float> expected, double tol, int seed)
    {
        Assert.HasCount(expected.Length, actual, name);
        if (expected.Length == 0) return; // a rank without tokens: nothing to compare
        TensorComparison cmp = TensorComparison.Scaled(name, actual, expected, tol);
        Assert.IsTrue(cmp.AllClose, $"seed {seed}: {cmp}");
    }

    [TestMethod]
    public void MultiRank_OneRankFails_EveryOtherRankErrorsInsteadOfHanging()
    {
        CudaContext[] contexts = NcclGpuTests.RequireGpus(2);
        try
        {
            MoeConfig c = MoeConfig.Preset("tiny");
            MoeWeights w = MoeWeights.Random(c, 11, ScalarType.BFloat16);
            var options = new ExpertParallelOptions { ExchangeTimeout = TimeSpan.FromSeconds(20) };
            using ExpertParallelGroup group = ExpertParallelGroup.Create(contexts, w, ScalarType.BFloat16, options);
            var buffers = contexts.Select(ctx => (X: DeviceBuffer<BFloat16>.FromHost(ctx, new BFloat16[4 * c.HiddenSize]), Y: new DeviceBuffer<BFloat16>(ctx, 4 * c.HiddenSize))).ToArray();
            try
            {
                var clock = Stopwatch.StartNew();
                AggregateException? ex = null;
                NcclGpuTests.WithinWatchdog(Watchdog, () => ex = Assert.ThrowsExactly<AggregateException>(() => group.Run((r, block, s) =>
                {
                    if (r == 1) throw new InvalidOperationException("rank 1 died before its forward");
                    block.Forward(s, buffers[r].X, buffers[r].Y, 4);
                })));
                Assert.IsLessThan(options.ExchangeTimeout.TotalSeconds, clock.Elapsed.TotalSeconds, "the failure cancelled rank 0's wait");
                Assert.HasCount(2, ex!.InnerExceptions);
                Assert.IsInstanceOfType<InvalidOperationException>(ex.InnerExceptions[0], "the first failure first");
                // rank 0 stops through the cancellation, or through NCCL seeing rank 1's communicator go (a remote error)
                Assert.IsTrue(ex.InnerExceptions[1] is OperationCanceledException or NcclException, ex.InnerExceptions[1].ToString());
                Assert.IsTrue(group.Blocks[0].Communicator.IsAborted, "rank 0 aborted its communicator");
            }
            finally
            {
                foreach (var b in buffers) { b.X.Dispose(); b.Y.Dispose(); }
            }
        }
        finally
        {
            foreach (CudaContext c in contexts) c.Dispose();
        }
    }

    [TestMethod]
    public void MultiRank_PeerNeverCalls_TimesOutWithAnError()
    {
        CudaContext[] contexts = NcclGpuTests.RequireGpus(2);
        NcclCommunicator[] comms = NcclCommunicator.InitRanks(contexts, TimeSpan.FromSeconds(60));
        try
        {
            MoeConfig c = MoeConfig.Preset("tiny");
            MoeWeights w = MoeWeights.Random(c, 13, ScalarType.BFloat16);
            var options = new ExpertParallelOptions { ExchangeTimeout = TimeSpan.FromSeconds(3) };
            using var block = new ExpertParallelBlock(comms[0], w, ScalarType.BFloat16, options);
            using var x = DeviceBuffer<BFloat16>.FromHost(contexts[0], new BFloat16[4 * c.HiddenSize]);
            using var y = new DeviceBuffer<BFloat16>(contexts[0], 4 * c.HiddenSize);
            using var s = new CudaStream(contexts[0]);
            NcclGpuTests.WithinWatchdog(Watchdog, () =>
            {
                contexts[0].MakeCurrent();
                var ex = Assert.ThrowsExactly<NcclException>(() => block.Forward(s, x, y, 4)); // rank 1 never calls Forward
                Assert.AreEqual(NcclResult.Timeout, ex.Result, ex.Message);
                Assert.Contains("count exchange", ex.Message);
            });
            Assert.IsTrue(comms[0].IsAborted);
        }
        finally
        {
            NcclCommunicator.DisposeAll(comms);
            foreach (CudaContext c in contexts) c.Dispose();
        }
    }
}
