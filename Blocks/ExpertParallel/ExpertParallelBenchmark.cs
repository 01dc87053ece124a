using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Blocks;

/// <summary>One timed configuration of <see cref="ExpertParallelBenchmark"/>.</summary>
/// <param name="Ranks">N GPUs.</param>
/// <param name="TokensPerRank">T on every rank.</param>
/// <param name="Pass">"fwd" or "fwd+bwd".</param>
/// <param name="MedianMs">Median over the replays of the layer time: the slowest rank's stream time, ms.</param>
/// <param name="ExchangeMs">Median of that rank's time inside the exchanges (counts with their host wait and planning,
/// rows, results, gradients, the router all-reduce), ms.</param>
/// <param name="ExchangeShare">ExchangeMs / MedianMs.</param>
/// <param name="RowsReceivedMax">The most rows any rank's experts received (load balance), last replay.</param>
/// <param name="Replays">Timed replays.</param>
public sealed record ExpertParallelBenchRow(int Ranks, int TokensPerRank, string Pass, double MedianMs, double ExchangeMs,
    double ExchangeShare, int RowsReceivedMax, int Replays);

/// <summary>
/// Times an expert-parallel layer driven by one process (<see cref="ExpertParallelGroup"/>): random weights and, per
/// T, fresh random inputs on every rank; warm-up, then CUDA events around each rank's forward (and backward) and
/// around every exchange; the layer time of a replay is the slowest rank's.
/// </summary>
public static class ExpertParallelBenchmark
{
    /// <summary>Events per rank and replay: begin/end of every exchange (3 forward, 3 backward) and of the call.</summary>
    private const int EventsPerReplay = 2 * 6 + 2;

    /// <exception cref="ArgumentException">No T, a T below 1, fewer than 1 replay.</exception>
    public static IReadOnlyList<ExpertParallelBenchRow> Run(IReadOnlyList<CudaContext> contexts, MoeConfig config, ScalarType dtype,
        IReadOnlyList<int> tokensPerRank, bool backward, int seed, int replays = 10, Action<string>? progress = null,
        Action<ExpertParallelBenchRow>? onRow = null)
    {
        ArgumentNullException.ThrowIfNull(contexts);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tokensPerRank);
        if (tokensPerRank.Count == 0 || tokensPerRank.Any(t => t < 1)) throw new ArgumentException("Every T must be at least 1.", nameof(tokensPerRank));
        ArgumentOutOfRangeException.ThrowIfLessThan(replays, 1);
        progress?.Invoke("generating the weights");
        MoeWeights weights = MoeWeights.Random(config, seed, dtype);
        progress?.Invoke($"uploading every rank's experts, NCCL init over {contexts.Count} GPUs");
        using ExpertParallelGroup group = ExpertParallelGroup.Create(contexts, weights, dtype);
        int n = group.Ranks;
        var events = new CudaEvent[n][];
        var used = new int[n];
        var rows = new List<ExpertParallelBenchRow>();
        try
        {
            for (int r = 0; r < n; r++)
            {
                events[r] = Enumerable.Range(0, EventsPerReplay).Select(_ => new CudaEvent(contexts[r])).ToArray();
                int rank = r;
                group.Blocks[r].StepProbe = (s, _) => events[rank][used[rank]++].Record(s);
            }
            foreach (int tokens in tokensPerRank)
                foreach (bool withBackward in backward ? (bool[])[false, true] : [false])
                {
                    progress?.Invoke($"T={tokens} per rank {(withBackward ? "fwd+bwd" : "fwd")}");
                    ExpertParallelBenchRow row = Time(group, contexts, config, dtype, tokens, withBackward, seed + tokens, replays, events, used);
                    rows.Add(row);
                    onRow?.Invoke(row);
                }
        }
        finally
        {
            for (int r = 0; r < n; r++)
            {
                group.Blocks[r].StepProbe = null;
                foreach (CudaEvent? e in events[r] ?? []) e?.Dispose();
            }
        }
        return rows;
    }

    private static ExpertParallelBenchRow Time(ExpertParallelGroup group, IReadOnlyList<CudaContext> contexts, MoeConfig c, ScalarType dt,
        int tokens, bool backward, int seed, int replays, CudaEvent[][] events, int[] used)
    {
        int n = group.Ranks;
        long th = (long)tokens * c.HiddenSize;
        var x = new DeviceBuffer<byte>[n];
        var y = new DeviceBuffer<byte>[n];
        var dY = new DeviceBuffer<byte>[n];
        var grads = new DeviceGradients<byte>?[n];
        try
        {
            for (int r = 0; r < n; r++)
            {
                contexts[r].MakeCurrent();
                x[r] = DeviceTransfer.UploadNew(contexts[r], TensorRandom.Normal(th, seed + 7919 * r, 1f, dt), dt);
                dY[r] = DeviceTransfer.UploadNew(contexts[r], TensorRandom.Normal(th, seed + 7919 * r + 1, 1f, dt), dt);
                y[r] = new DeviceBuffer<byte>(contexts[r], th * dt.SizeOf());
                if (backward)
                {
                    int el = group.Blocks[r].LocalExperts;
                    long es = dt.SizeOf();
                    grads[r] = new DeviceGradients<byte>(new DeviceBuffer<byte>(contexts[r], th * es), new DeviceBuffer<byte>(contexts[r], c.GateElements * es),
                        new DeviceBuffer<byte>(contexts[r], el * 2L * c.IntermediateSize * c.HiddenSize * es),
                        new DeviceBuffer<byte>(contexts[r], el * (long)c.HiddenSize * c.IntermediateSize * es));
                }
                contexts[r].Synchronize();
            }
            var layerMs = new List<double>();
            var exchangeMs = new List<double>();
            for (int rep = -2; rep < replays; rep++) // two warm-ups (buffers, JIT, NCCL connections)
            {
                group.Run((r, block, s) =>
                {
                    used[r] = 0;
                    events[r][used[r]++].Record(s);
                    Call(block, s, dt, x[r], y[r], dY[r], grads[r], tokens);
                    events[r][used[r]++].Record(s);
                });
                if (rep < 0) continue;
                int slowest = 0;
                double slowestMs = -1;
                for (int r = 0; r < n; r++)
                {
                    double ms = CudaEvent.ElapsedMilliseconds(events[r][0], events[r][used[r] - 1]);
                    if (ms > slowestMs) (slowest, slowestMs) = (r, ms);
                }
                double inside = 0;
                for (int i = 1; i + 1 < used[slowest] - 1; i += 2)
                    inside += CudaEvent.ElapsedMilliseconds(events[slowest][i], events[slowest][i + 1]);
                layerMs.Add(slowestMs);
                exchangeMs.Add(inside);
            }
            double median = Median(layerMs), exchange = Median(exchangeMs);
            int maxRows = group.Blocks.Max(b => b.LastPlan.TotalReceived);
            return new ExpertParallelBenchRow(n, tokens, backward ? "fwd+bwd" : "fwd", median, exchange, median > 0 ? exchange / median : 0, maxRows, replays);
        }
        finally
        {
            foreach (DeviceBuffer<byte>? b in x.Concat(y).Concat(dY)) b?.Dispose();
            foreach (DeviceGradients<byte>? g in grads)
            {
                if (g is null) continue;
                g.HiddenStates.Dispose();
                g.Gate.Dispose();
                g.GateUpProj.Dispose();
                g.DownProj.Dispose();
            }
        }
    }

    /// <summary>One forward (and backward) on byte buffers viewed as the dtype's element type.</summary>
    private static void Call(ExpertParallelBlock block, CudaStream s, ScalarType dt, DeviceBuffer<byte> x, DeviceBuffer<byte> y,
        DeviceBuffer<byte> dY, DeviceGradients<byte>? g, int tokens)
    {
        switch (dt)
        {
            case ScalarType.BFloat16: Call<BFloat16>(block, s, x, y, dY, g, tokens); break;
            case ScalarType.Float16: Call<Half>(block, s, x, y, dY, g, tokens); break;
            default: Call<float>(block, s, x, y, dY, g, tokens); break;
        }
    }

    private static void Call<T>(ExpertParallelBlock block, CudaStream s, DeviceBuffer<byte> x, DeviceBuffer<byte> y,
        DeviceBuffer<byte> dY, DeviceGradients<byte>? g, int tokens) where T : unmanaged
    {
        using DeviceBuffer<T> xv = View<T>(x), yv = View<T>(y);
        block.Forward(s, xv, yv, tokens);
        if (g is null) return;
        using DeviceBuffer<T> dYv = View<T>(dY), dX = View<T>(g.HiddenStates), dGate = View<T>(g.Gate), dGateUp = View<T>(g.GateUpProj), dDown = View<T>(g.DownProj);
        block.Backward(s, dYv, new DeviceGradients<T>(dX, dGate, dGateUp, dDown));
    }

    private static DeviceBuffer<T> View<T>(DeviceBuffer<byte> bytes) where T : unmanaged =>
        DeviceBuffer<T>.Wrap(bytes.Context, bytes.DevicePointer, bytes.SizeInBytes / DeviceBuffer<T>.ElementSize);

    private static double Median(List<double> values)
    {
        values.Sort();
        int m = values.Count / 2;
        return values.Count % 2 == 1 ? values[m] : (values[m - 1] + values[m]) / 2;
    }
}
