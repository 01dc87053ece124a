using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Blocks.Benchmarking;

/// <summary>
/// Times the fused block and, for context, the same block with its GEMMs on cuBLAS grouped GEMMs
/// (<see cref="CublasDeviceGroupedBlock"/>; optionally also the host-orchestrated reference on cuBLAS) over a list of
/// token counts: whole block from X on the device to Y on the device (and forward+backward), CUDA events around every
/// replay after a warm-up (the fused block replayed from a CUDA graph by default), the median, fresh random inputs per
/// T; FLOPs, bytes and the floor from <see cref="MoeCost"/>.
/// </summary>
public sealed class BlockBenchmark
{
    private readonly CudaContext _context;
    private readonly BlockBenchmarkOptions _options;

    /// <param name="context">The GPU.</param>
    /// <param name="options">What to time (validated here).</param>
    /// <param name="rates">Card rates for the floor; null = <see cref="ResolveRates"/>.</param>
    public BlockBenchmark(CudaContext context, BlockBenchmarkOptions options, DeviceRates? rates = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _context = context;
        _options = options;
        Rates = rates ?? ResolveRates(context);
    }

    /// <summary>Rates used for the floor.</summary>
    public DeviceRates Rates { get; }

    /// <summary>The table rates for the card's name, or rates measured on it (copy bandwidth, cuBLAS bf16 GEMM).</summary>
    public static DeviceRates ResolveRates(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return DeviceRates.FromTable(context.Name) ?? RateMeasurement.Measure(context);
    }

    /// <summary>Runs every (T, pass, impl); <paramref name="progress"/> is called before each and with each row.</summary>
    public BenchmarkReport Run(Action<BenchmarkProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        DateTimeOffset started = DateTimeOffset.UtcNow;
        MoeConfig c = _options.Config;
        ScalarType dt = _options.DType;
        var rows = new List<BenchmarkRow>();
        var choices = new List<string>();
        progress?.Invoke(new BenchmarkProgress("fused", 0, "generating and uploading weights"));
        MoeWeights weights = MoeWeights.Random(c, _options.Seed, dt);
        ColdStartTiming? coldStart = null;
        if (_options.MeasureColdStart && _options.Fused.Autotune)
        {
            progress?.Invoke(new BenchmarkProgress("fused", _options.Tokens[0], "cold start to first forward, without and with stored choices"));
            coldStart = ColdStartTiming.Measure(_context, weights, dt, _options.Fused, _options.Tokens[0], _options.Seed);
        }
        using (var deviceWeights = Qwen3MoeDeviceWeights.Upload(_context, weights, dt))
        {
            using (var block = new Qwen3MoeFusedBlock(deviceWeights, _options.Fused))
            {
                foreach (int tokens in _options.Tokens)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    rows.AddRange(TimeDevice(block, tokens, progress, cancellationToken));
                }
                foreach (var ((gemm, shapeClass), cfg) in block.ChosenConfigs.OrderBy(kv => kv.Key.ShapeClassTokens).ThenBy(kv => kv.Key.Gemm))
                    choices.Add(string.Create(CultureInfo.InvariantCulture, $"{gemm} T={shapeClass}: {cfg?.Name ?? "default"}"));
            }
            if (_options.IncludeCublasGrouped)
            {
                using var baseline = new CublasDeviceGroupedBlock(deviceWeights);
                foreach (int tokens in _options.Tokens)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    rows.AddRange(TimeDevice(baseline, tokens, progress, cancellationToken));
                }
            }
        }
        if (_options.IncludeReference)
        {
            using var reference = new CublasGroupedBlock(_context, weights, dt);
            foreach (int tokens in _options.Tokens)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (tokens > _options.ReferenceMaxTokens)
                {
                    progress?.Invoke(new BenchmarkProgress("reference-cublas", tokens, $"skipped (T > {_options.ReferenceMaxTokens})"));
                    continue;
                }
                rows.AddRange(TimeReference(reference, tokens, progress, cancellationToken));
            }
        }
        return new BenchmarkReport(_context.Name, Rates, c.Name ?? "config", c.HiddenSize, c.IntermediateSize, c.NumExperts, c.TopK,
            dt.ShortName(), _options.Fused.Describe(), started, rows,
            GroupedGemm.For(_context).PathName(GroupedGemmLayout.ForwardNT, dt), choices) { ColdStart = coldStart };
    }

    private List<BenchmarkRow> TimeDevice(IMoeDeviceBlock impl, int tokens, Action<BenchmarkProgress>? progress, CancellationToken ct) =>
        _options.DType switch
        {
            ScalarType.BFloat16 => TimeDevice<BFloat16>(impl, tokens, progress, ct),
            ScalarType.Float16 => TimeDevice<Half>(impl, tokens, progress, ct),
            _ => TimeDevice<float>(impl, tokens, progress, ct),
        };

    private List<BenchmarkRow> TimeDevice<TElem>(IMoeDeviceBlock impl, int tokens, Action<BenchmarkProgress>? progress,
        CancellationToken ct) where TElem : unmanaged
    {
        MoeConfig c = _options.Config;
        ScalarType dt = _options.DType;
        long th = (long)tokens * c.HiddenSize;
        var rows = new List<BenchmarkRow>();
        using var stream = new CudaStream(_context);
        using var x = new DeviceBuffer<TElem>(_context, th);
        using var y = new DeviceBuffer<TElem>(_context, th);
        using var dY = new DeviceBuffer<TElem>(_context, th);
        using var dX = new DeviceBuffer<TElem>(_context, th);
        UploadRandom(x, TensorRandom.Normal(th, unchecked(_options.Seed + tokens), 1f, dt), dt);
        UploadRandom(dY, TensorRandom.Normal(th, unchecked(_options.Seed + 7 * tokens + 1), 1f, dt), dt);
        DeviceGradients<TElem>? grads = null;
        try
        {
            progress?.Invoke(new BenchmarkProgress(impl.Name, tokens, "warm-up (autotune on first use)"));
            impl.Reserve(tokens, _options.Backward);
            for (int i = 0; i < _options.WarmupReplays; i++) impl.Forward(stream, x, y, tokens);
            stream.Synchronize();
            int hit = impl.CountExpertsHit();

            rows.Add(TimePass(impl, stream, tokens, hit, BenchmarkPass.Forward, s => impl.Forward(s, x, y, tokens), progress, ct));
            if (impl is Qwen3MoeFusedBlock breakdownBlock && !string.IsNullOrEmpty(_options.BreakdownFile))
                WriteBreakdown(breakdownBlock, stream, tokens, "fwd", s => impl.Forward(s, x, y, tokens));
            if (_options.Backward)
            {
                grads = new DeviceGradients<TElem>(
                    dX,
                    new DeviceBuffer<TElem>(_context, c.GateElements),
                    new DeviceBuffer<TElem>(_context, c.GateUpProjElements),
                    new DeviceBuffer<TElem>(_context, c.DownProjElements));
                DeviceGradients<TElem> g = grads;
                for (int i = 0; i < _options.WarmupReplays; i++)
                {
                    impl.Forward(stream, x, y, tokens);
                    impl.Backward(stream, dY, g);
                }
                stream.Synchronize();
                rows.Add(TimePass(impl, stream, tokens, hit, BenchmarkPass.ForwardBackward, s =>
                {
                    impl.Forward(s, x, y, tokens);
                    impl.Backward(s, dY, g);
                }, progress, ct));
                if (impl is Qwen3MoeFusedBlock breakdownBlock2 && !string.IsNullOrEmpty(_options.BreakdownFile))
                    WriteBreakdown(breakdownBlock2, stream, tokens, "fwd+bwd", s =>
                    {
                        impl.Forward(s, x, y, tokens);
                        impl.Backward(s, dY, g);
                    });
            }
        }
        finally
        {
            if (grads is not null)
            {
                grads.Gate.Dispose();
                grads.GateUpProj.Dispose();
                grads.DownProj.Dispose();
            }
        }
        return rows;
    }

    private BenchmarkRow TimePass(IMoeDeviceBlock impl, CudaStream stream, int tokens, int hit, BenchmarkPass pass, Action<CudaStream> call,
        Action<BenchmarkProgress>? progress, CancellationToken ct)
    {
        string passName = PassName(pass);
        progress?.Invoke(new BenchmarkProgress(impl.Name, tokens, $"timing {passName}"));
        CudaGraph? graph = null;
        string mode = "direct";
        if (_options.UseGraph && impl.IsGraphCapturable)
        {
            try
            {
                graph = CudaGraph.Capture(stream, call);
                mode = "graph";
            }
            catch (CudaException)
            {
                // NOTE: a failed capture leaves the stream usable (the capture is ended by CudaGraph.Capture);
                // fall back to direct launches rather than losing the row.
                graph = null;
            }
        }
        try
        {
            Action<CudaStream> replay = graph is null ? call : s => graph.Launch(s);
            using var start = new CudaEvent(_context);
            using var end = new CudaEvent(_context);
            // Estimate one call's time to choose the replay count.
            replay(stream);
            start.Record(stream);
            for (int i = 0; i < 3; i++) replay(stream);
            end.Record(stream);
            end.Synchronize();
            double estimate = Math.Max(1e-3, CudaEvent.ElapsedMilliseconds(start, end) / 3);
            int replays = ReplayCount(estimate);
            var times = new double[replays];
            // NOTE: one event pair per replay, all recorded before one synchronisation: events are reused only
            // after the host reads them, so use a pool of pairs.
            var starts = new CudaEvent[replays];
            var ends = new CudaEvent[replays];
            try
            {
                for (int i = 0; i < replays; i++)
                {
                    starts[i] = new CudaEvent(_context);
                    ends[i] = new CudaEvent(_context);
                }
                for (int i = 0; i < replays; i++)
                {
                    ct.ThrowIfCancellationRequested();
                    starts[i].Record(stream);
                    replay(stream);
                    ends[i].Record(stream);
                }
                stream.Synchronize();
                for (int i = 0; i < replays; i++) times[i] = CudaEvent.ElapsedMilliseconds(starts[i], ends[i]);
            }
            finally
            {
                foreach (CudaEvent? e in starts) e?.Dispose();
                foreach (CudaEvent? e in ends) e?.Dispose();
            }
            BenchmarkRow row = MakeRow(impl.Name, tokens, pass, Median(times), replays, hit, mode);
            progress?.Invoke(new BenchmarkProgress(impl.Name, tokens, $"{passName} done", row));
            return row;
        }
        finally
        {
            graph?.Dispose();
        }
    }

    /// <summary>
    /// Appends to <see cref="BlockBenchmarkOptions.BreakdownFile"/> the median time of each launch step of
    /// <paramref name="call"/> (direct launches, an event after every step). The repetitions are enqueued back to back
    /// and synchronised once: a repetition's first step then starts behind the previous one's tail instead of on an
    /// idle GPU waiting for the host's launches (with a sync between repetitions the first step, router_logits, read
    /// 72.6 us at T=4096 on an H200 for a GEMM that `bench --gemm` times at ~20 us, docs/PERF.md v45).
    /// </summary>
    private void WriteBreakdown(Qwen3MoeFusedBlock block, CudaStream stream, int tokens, string pass, Action<CudaStream> call)
    {
        const int Repetitions = 21;
        var names = new List<string>();
        var times = new List<List<double>>();
        var events = new List<CudaEvent>();
        var repetitions = new List<(CudaEvent First, List<CudaEvent> Steps)>();
        try
        {
            for (int rep = 0; rep < Repetitions; rep++)
            {
                var stepNames = new List<string>();
                var stepEvents = new List<CudaEvent>();
                var first = new CudaEvent(_context);
                events.Add(first);
                first.Record(stream);
                block.StepProbe = (s, step) =>
                {
                    var ev = new CudaEvent(_context);
                    events.Add(ev);
                    ev.Record(s);
                    stepNames.Add(step);
                    stepEvents.Add(ev);
                };
                try
                {
                    call(stream);
                }
                finally
                {
                    block.StepProbe = null;
                }
                if (rep == 0)
                {
                    names.AddRange(stepNames);
                    foreach (string _ in stepNames) times.Add([]);
                }
                repetitions.Add((first, stepEvents));
            }
            stream.Synchronize();
            foreach ((CudaEvent first, List<CudaEvent> stepEvents) in repetitions)
            {
                CudaEvent previous = first;
                for (int i = 0; i < stepEvents.Count && i < names.Count; i++)
                {
                    times[i].Add(CudaEvent.ElapsedMilliseconds(previous, stepEvents[i]));
                    previous = stepEvents[i];
                }
            }
        }
        finally
        {
            foreach (CudaEvent ev in events) ev.Dispose();
        }
        var text = new System.Text.StringBuilder();
        text.Append(System.Globalization.CultureInfo.InvariantCulture, $"{_context.Name} T={tokens} {pass} (direct launches, median of {Repetitions}):");
        double total = 0;
        for (int i = 0; i < names.Count; i++)
        {
            double ms = Median(times[i]);
            total += ms;
            text.Append(System.Globalization.CultureInfo.InvariantCulture, $" {names[i]}={ms * 1000:0.0}us");
        }
        text.Append(System.Globalization.CultureInfo.InvariantCulture, $" | sum={total * 1000:0.0}us");
        foreach (var chosen in block.ChosenConfigs.Where(kv => kv.Key.ShapeClassTokens == BlockWorkspaceLayout.ShapeClassTokens(tokens)))
            text.Append(System.Globalization.CultureInfo.InvariantCulture, $" {chosen.Key.Gemm}:{chosen.Value}");
        File.AppendAllText(_options.BreakdownFile!, text.ToString() + Environment.NewLine);
    }

    // ---- reference --------------------------------------------------------------------------------------------------

    private List<BenchmarkRow> TimeReference(IMoeHostBlock reference, int tokens, Action<BenchmarkProgress>? progress,
        CancellationToken ct)
    {
        MoeConfig c = _options.Config;
        ScalarType dt = _options.DType;
        long th = (long)tokens * c.HiddenSize;
        float[] x = TensorRandom.Normal(th, unchecked(_options.Seed + tokens), 1f, dt);
        float[] dY = TensorRandom.Normal(th, unchecked(_options.Seed + 7 * tokens + 1), 1f, dt);
        var rows = new List<BenchmarkRow>();
        progress?.Invoke(new BenchmarkProgress(reference.Name, tokens, "warm-up"));
        MoeIntermediates first = reference.Forward(x);
        int hit = MoeCost.ExpertsHit(first.Routing.Selected, c.NumExperts);
        foreach (BenchmarkPass pass in _options.Backward ? new[] { BenchmarkPass.Forward, BenchmarkPass.ForwardBackward } : [BenchmarkPass.Forward])
        {
            ct.ThrowIfCancellationRequested();
            progress?.Invoke(new BenchmarkProgress(reference.Name, tokens, $"timing {PassName(pass)}"));
            Action call = pass == BenchmarkPass.Forward
                ? () => reference.Forward(x)
                : () => { reference.Forward(x); reference.Backward(dY); };
            var sw = Stopwatch.StartNew();
            call();
            double estimate = Math.Max(1e-3, sw.Elapsed.TotalMilliseconds);
            // NOTE: host-orchestrated and slow: far fewer replays than the fused block.
            int replays = Math.Clamp((int)(_options.TargetMillisecondsPerRow / estimate), 1, 20);
            var times = new double[replays];
            for (int i = 0; i < replays; i++)
            {
                ct.ThrowIfCancellationRequested();
                sw.Restart();
                call();
                times[i] = sw.Elapsed.TotalMilliseconds;
            }
            BenchmarkRow row = MakeRow(reference.Name, tokens, pass, Median(times), replays, hit, "host");
            progress?.Invoke(new BenchmarkProgress(reference.Name, tokens, $"{PassName(pass)} done", row));
            rows.Add(row);
        }
        return rows;
    }

    // ---- helpers ----------------------------------------------------------------------------------------------------

    private BenchmarkRow MakeRow(string impl, int tokens, BenchmarkPass pass, double medianMs, int replays, int hit, string mode)
    {
        MoeCost cost = MoeCost.Of(_options.Config, _options.DType, tokens, hit, pass);
        double floor = cost.FloorMilliseconds(Rates);
        double seconds = medianMs * 1e-3;
        return new BenchmarkRow(impl, tokens, PassName(pass), medianMs, cost.Flops / seconds / 1e12, cost.Bytes / seconds / 1e9,
            floor, 100 * floor / medianMs, replays, hit, cost.Flops, cost.Bytes, mode);
    }

    internal int ReplayCount(double estimateMs) =>
        (int)Math.Clamp(Math.Ceiling(_options.TargetMillisecondsPerRow / estimateMs), _options.MinReplays, _options.MaxReplays);

    /// <summary>Median of <paramref name="values"/> (mean of the two middle values for an even count).</summary>
    public static double Median(IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count == 0) throw new ArgumentException("Median of no values.", nameof(values));
        double[] sorted = values.Order().ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : 0.5 * (sorted[mid - 1] + sorted[mid]);
    }

    /// <summary>"fwd" or "fwd+bwd".</summary>
    public static string PassName(BenchmarkPass pass) => pass == BenchmarkPass.Forward ? "fwd" : "fwd+bwd";

    private void UploadRandom<TElem>(DeviceBuffer<TElem> buffer, float[] values, ScalarType dt) where TElem : unmanaged
    {
        var bytes = new byte[values.LongLength * dt.SizeOf()];
        StorageConvert.ToStorageParallel(values, dt, bytes);
        buffer.CopyFromHost(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, TElem>(bytes.AsSpan()));
    }
}
