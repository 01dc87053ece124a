using System.Runtime.InteropServices;
using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Decode;

/// <summary>
/// The decode step (one-launch routing, gate/up + SwiGLU, down + combine) with programmatic dependent launch (the sm_90
/// specialisations, griddepcontrol) against the same step launched plainly (sm_80 specialisations): every output
/// bitwise equal, on fresh random inputs from a printed seed, outputs poisoned before each run; the programmatic step
/// three times back to back on the stream (each step's routing must see the previous step's down kernel done) and
/// once as a CUDA graph replayed twice.
/// </summary>
[TestClass]
[TestCategory(GpuTest.Category)]
[DoNotParallelize]
public sealed class DecodeProgrammaticLaunchTests
{
    private const int E = 32, H = 1024, I = 256, K = 4;

    [TestMethod]
    [DataRow(ScalarType.BFloat16, 1)]
    [DataRow(ScalarType.BFloat16, 8)]
    [DataRow(ScalarType.Float16, 3)]
    public void ProgrammaticStep_IsBitwiseThePlainStep(ScalarType dtype, int T)
    {
        CudaContext ctx = GpuTest.RequireContext();
        MoeKernels kernels = MoeKernels.For(ctx);
        if (!kernels.CanLaunchProgrammatic)
            Assert.Inconclusive($"programmatic dependent launch needs compute capability 9.0+; this GPU is {ctx.ComputeCapability}");
        int seed = 9700 + T + (int)dtype;
        using var inputs = new StepInputs(ctx, dtype, T, seed);
        using var stream = new CudaStream(ctx);
        using var plain = new StepBuffers(ctx, dtype, T);
        using var pdl = new StepBuffers(ctx, dtype, T);
        ctx.Synchronize();

        byte[][] expected = DefaultStep(kernels, stream, dtype, T, inputs, plain);

        pdl.Poison(stream);
        for (int i = 0; i < 3; i++) Step(kernels, stream, dtype, T, inputs, pdl, programmatic: true);
        stream.Synchronize();
        Compare(expected, pdl.Download(), "three back-to-back programmatic steps");

        pdl.Poison(stream);
        stream.Synchronize();
        using CudaGraph graph = CudaGraph.Capture(stream, s => Step(kernels, s, dtype, T, inputs, pdl, programmatic: true));
        graph.Launch(stream);
        graph.Launch(stream);
        stream.Synchronize();
        Compare(expected, pdl.Download(), "a captured programmatic step replayed twice");
    }

    /// <summary>
    /// Every decode cut (<see cref="DecodeTuning"/>: each pass width, one column per warp, a 3-column walk and the
    /// one-wave walk, prefetch off, on in both kernels and in the down kernel only, the L2 fill of the down weights, the
    /// T = 1 down entry and the down kernel of every T) gives bitwise the outputs of the default cut, plain and (9.0+) programmatic;
    /// the default cut itself is checked against the grouped reference by DecodePathTests. Fresh random inputs from a
    /// printed seed, outputs poisoned before each run. T = 5 and 8 (k = 4 of E = 32) give experts more rows than the narrow widths take
    /// in one pass.
    /// </summary>
    [TestMethod]
    [DataRow(ScalarType.BFloat16, 1)]
    [DataRow(ScalarType.BFloat16, 5)]
    [DataRow(ScalarType.Float16, 8)]
    public void EveryTuning_IsBitwiseTheDefaultStep(ScalarType dtype, int T)
    {
        CudaContext ctx = GpuTest.RequireContext();
        MoeKernels kernels = MoeKernels.For(ctx);
        int seed = 9800 + T + (int)dtype;
        using var inputs = new StepInputs(ctx, dtype, T, seed);
        using var stream = new CudaStream(ctx);
        using var reference = new StepBuffers(ctx, dtype, T);
        using var cut = new StepBuffers(ctx, dtype, T);
        ctx.Synchronize();

        byte[][] expected = DefaultStep(kernels, stream, dtype, T, inputs, reference);

        bool[] launches = kernels.CanLaunchProgrammatic ? [false, true] : [false];
        foreach (int rows in MoeKernelModules.DecodeRowsPerPass)
            foreach (int columns in new[] { 0, 1, 3 })
                foreach ((bool prefetchGateUp, bool prefetchDown, bool fillDown) in new[] { (false, false, false), (true, true, false), (false, true, false), (false, false, true) })
                    foreach ((bool programmatic, bool tokenDown) in launches.SelectMany(p => T == 1 ? new[] { (p, true), (p, false) } : new[] { (p, true) }))
                    {
                        var tuning = new DecodeTuning(rows, columns, prefetchGateUp, prefetchDown, fillDown, tokenDown);
                        cut.Poison(stream);
                        Step(kernels, stream, dtype, T, inputs, cut, programmatic, tuning);
                        stream.Synchronize();
                        Compare(expected, cut.Download(), $"{tuning}, programmatic {programmatic}");
                    }
    }

    /// <summary>
    /// The T = 1 step with a route record (the routing publishes its k experts right after the top-k, both decode kernels
    /// read them from there, the down kernel zeroes the record): every output bitwise the plain step's, for two
    /// different inputs one after the other on the same buffers and record (a record left set would hand the second
    /// step the first one's experts), at the default cut, the 2-row pass, without the L2 fill and with the down kernel
    /// of every T instead of the T = 1 down entry (each zeroes the record), plainly and (9.0+)
    /// programmatically; then as a captured graph replayed twice. The record is all zero after every step; right after
    /// a routing launch alone it holds 0x80000000 | e for the selected experts in id order, in each of its 16 copies.
    /// </summary>
    [TestMethod]
    [DataRow(ScalarType.BFloat16)]
    [DataRow(ScalarType.Float16)]
    public void RouteRecordStep_IsBitwiseThePlainStep(ScalarType dtype)
    {
        const int T = 1;
        CudaContext ctx = GpuTest.RequireContext();
        MoeKernels kernels = MoeKernels.For(ctx);
        int seed = 9900 + (int)dtype;
        using var first = new StepInputs(ctx, dtype, T, seed);
        using var second = new StepInputs(ctx, dtype, T, seed + 1);
        using var stream = new CudaStream(ctx);
        using var plain = new StepBuffers(ctx, dtype, T);
        using var routed = new StepBuffers(ctx, dtype, T);
        using var record = new DeviceBuffer<uint>(ctx, MoeKernels.DecodeRouteRecordBytes / 4);
        record.FillBytes(0);
        ctx.Synchronize();
        byte[][] expectedFirst = DefaultStep(kernels, stream, dtype, T, first, plain);
        byte[][] expectedSecond = DefaultStep(kernels, stream, dtype, T, second, plain);
        CollectionAssert.AreNotEqual(expectedFirst[2], expectedSecond[2], "the two inputs must select different experts (another seed)");

        bool[] launches = kernels.CanLaunchProgrammatic ? [false, true] : [false];
        foreach (DecodeTuning tuning in new[]
                 {
                     DecodeTuning.For(T, H), DecodeTuning.For(T, H) with { RowsPerPass = 2 }, DecodeTuning.For(T, H) with { FillDown = false },
                     DecodeTuning.For(T, H) with { TokenDown = false },
                 })
            foreach (bool programmatic in launches)
                foreach ((StepInputs inputs, byte[][] expected, string which) in new[] { (first, expectedFirst, "first"), (second, expectedSecond, "second") })
                {
                    routed.Poison(stream);
                    Step(kernels, stream, dtype, T, inputs, routed, programmatic, tuning, record.AsRange());
                    stream.Synchronize();
                    string what = $"route record, {which} input, {tuning}, programmatic {programmatic}";
                    Compare(expected, routed.Download(), what);
                    AssertRecordZero(record, what);
                }

        bool pdl = kernels.CanLaunchProgrammatic;
        routed.Poison(stream);
        stream.Synchronize();
        using CudaGraph graph = CudaGraph.Capture(stream, s => Step(kernels, s, dtype, T, second, routed, pdl, null, record.AsRange()));
        graph.Launch(stream);
        graph.Launch(stream);
        stream.Synchronize();
        Compare(expectedSecond, routed.Download(), "route record, a captured step replayed twice");
        AssertRecordZero(record, "route record, after the replays");

        // the routing launch alone: the published record
        kernels.RoutingDecode(stream, dtype, first.X.Range, first.Wr.Range, routed[0], routed[1], routed[2], routed[3], routed[4],
            routed[5], routed[6], routed.RouteCounter, T, E, K, H, normTopK: true, pdl, record.AsRange());
        stream.Synchronize();
        int[] sel = [.. MemoryMarshal.Cast<byte, int>(expectedFirst[2]).ToArray().Order()];
        uint[] words = record.ToArray();
        for (int c = 0; c < 16; c++)
            for (int r = 0; r < 32; r++)
                Assert.AreEqual(r < K ? 0x80000000u | (uint)sel[r] : 0u, words[c * 32 + r], $"record copy {c}, word {r}");
        record.FillBytes(0);
        ctx.Synchronize();
    }

    /// <summary>A route record the step cannot take (T = 2, too small, not 128-byte aligned) is refused, naming the record.</summary>
    [TestMethod]
    public void BadRouteRecord_IsRefusedBeforeAnyLaunch()
    {
        using var a = new BadLaunch(T: 2);
        (MoeKernels kernels, CudaStream stream, StepBuffers b, DeviceBuffer<byte> x, DeviceBuffer<byte> wgu) = (a.Kernels, a.Stream, a.Buffers, a.X, a.Wgu);
        using var wd = new DeviceBuffer<byte>(a.Context, (long)E * H * I * 2);
        using var record = new DeviceBuffer<byte>(a.Context, MoeKernels.DecodeRouteRecordBytes + 128);
        DeviceRange whole = record.AsRange();
        foreach ((int tokens, DeviceRange r, string why) in new[]
                 {
                     (2, whole, "T = 2"), (1, record.Slice(0, MoeKernels.DecodeRouteRecordBytes - 4), "too small"),
                     (1, record.Slice(16, MoeKernels.DecodeRouteRecordBytes), "16-byte aligned"),
                 })
        {
            var e = Assert.ThrowsExactly<ArgumentException>(() => kernels.DecodeGateUpSilu(stream, ScalarType.BFloat16,
                x.AsRange(), wgu.AsRange(), wd.AsRange(), b[4], b[5], b[7], b[8], tokens, E, K, H, I, record: r), why);
            Assert.AreEqual("record", e.ParamName, why);
            e = Assert.ThrowsExactly<ArgumentException>(() => kernels.DecodeDownCombine(stream, ScalarType.BFloat16, b[8], wd.AsRange(),
                b[4], b[5], b[6], DeviceRange.Null, b[9], b[3], b[10], b.DownCounters, tokens, E, K, H, I, slotOrder: false, record: r), why);
            Assert.AreEqual("record", e.ParamName, why);
            e = Assert.ThrowsExactly<ArgumentException>(() => kernels.RoutingDecode(stream, ScalarType.BFloat16, x.AsRange(), wgu.AsRange(),
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b.RouteCounter, tokens, E, K, H, normTopK: true, record: r), why);
            Assert.AreEqual("record", e.ParamName, why);
        }
    }

    private static void AssertRecordZero(DeviceBuffer<uint> record, string what)
    {
        uint[] words = record.ToArray();
        int set = Array.FindIndex(words, w => w != 0);
        Assert.AreEqual(-1, set, $"{what}: the route record is not zero after the step (word {set} = 0x{(set >= 0 ? words[set] : 0):x8})");
    }

    [TestMethod]
    public void BadTuning_IsRefusedBeforeAnyLaunch()
    {
        using var a = new BadLaunch(T: 1);
        (MoeKernels kernels, CudaStream stream, StepBuffers b, DeviceBuffer<byte> x, DeviceBuffer<byte> wgu) = (a.Kernels, a.Stream, a.Buffers, a.X, a.Wgu);
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernels.DecodeGateUpSilu(stream, ScalarType.BFloat16,
            x.AsRange(), wgu.AsRange(), DeviceRange.Null, b[4], b[5], b[7], b[8], 1, E, K, H, I, tuning: new DecodeTuning(3, 0, false, false)));
        Assert.AreEqual("tuning", e.ParamName);
        var fill = Assert.ThrowsExactly<ArgumentException>(() => kernels.DecodeGateUpSilu(stream, ScalarType.BFloat16,
            x.AsRange(), wgu.AsRange(), DeviceRange.Null, b[4], b[5], b[7], b[8], 1, E, K, H, I, tuning: new DecodeTuning(1, 0, false, false, FillDown: true)));
        Assert.AreEqual("down", fill.ParamName);
    }

    /// <summary>What the refused-launch tests pass (bf16): the kernels, a stream, T-token step buffers, X [T,H] and Wgu
    /// [E,2I,H] (contents unused: nothing is launched).</summary>
    private sealed class BadLaunch : IDisposable
    {
        public BadLaunch(int T)
        {
            Context = GpuTest.RequireContext();
            Kernels = MoeKernels.For(Context);
            Stream = new CudaStream(Context);
            Buffers = new StepBuffers(Context, ScalarType.BFloat16, T);
            X = new DeviceBuffer<byte>(Context, (long)T * H * 2);
            Wgu = new DeviceBuffer<byte>(Context, (long)E * 2 * I * H * 2);
        }

        public CudaContext Context { get; }
        public MoeKernels Kernels { get; }
        public CudaStream Stream { get; }
        public StepBuffers Buffers { get; }
        public DeviceBuffer<byte> X { get; }
        public DeviceBuffer<byte> Wgu { get; }

        public void Dispose()
        {
            Wgu.Dispose();
            X.Dispose();
            Buffers.Dispose();
            Stream.Dispose();
        }
    }

    /// <summary>The plain-launch step at the default tuning into poisoned <paramref name="b"/>: every output, downloaded.</summary>
    private static byte[][] DefaultStep(MoeKernels kernels, CudaStream s, ScalarType dtype, int T, StepInputs a, StepBuffers b)
    {
        b.Poison(s);
        Step(kernels, s, dtype, T, a, b, programmatic: false);
        s.Synchronize();
        return b.Download();
    }

    private static void Step(MoeKernels kernels, CudaStream s, ScalarType dtype, int T, StepInputs a, StepBuffers b,
        bool programmatic, DecodeTuning? tuning = null, DeviceRange record = default)
    {
        kernels.RoutingDecode(s, dtype, a.X.Range, a.Wr.Range, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b.RouteCounter,
            T, E, K, H, normTopK: true, programmatic, record);
        kernels.DecodeGateUpSilu(s, dtype, a.X.Range, a.Wgu.Range, a.Wd.Range, b[4], b[5], b[7], b[8], T, E, K, H, I, programmatic, tuning, record);
        kernels.DecodeDownCombine(s, dtype, b[8], a.Wd.Range, b[4], b[5], b[6], DeviceRange.Null, b[9], b[3], b[10],
            b.DownCounters, T, E, K, H, I, slotOrder: false, programmatic, tuning, record);
    }

    /// <summary>Fresh random X [T,H], Wr [E,H], Wgu [E,2I,H] and Wd [E,H,I] from a seed (printed), rounded to the dtype.</summary>
    private sealed class StepInputs : IDisposable
    {
        public StepInputs(CudaContext ctx, ScalarType dtype, int T, int seed)
        {
            Console.WriteLine($"seed {seed}");
            var rng = new HostRandom(seed);
            X = DeviceTensor.Upload(ctx, dtype, HostDtype.Rounded(dtype, rng.Normal((long)T * H)));
            Wr = DeviceTensor.Upload(ctx, dtype, HostDtype.Rounded(dtype, rng.Normal((long)E * H, 0.05)));
            Wgu = DeviceTensor.Upload(ctx, dtype, HostDtype.Rounded(dtype, rng.Normal((long)E * 2 * I * H, 0.03)));
            Wd = DeviceTensor.Upload(ctx, dtype, HostDtype.Rounded(dtype, rng.Normal((long)E * H * I, 0.03)));
        }

        public DeviceTensor X { get; }
        public DeviceTensor Wr { get; }
        public DeviceTensor Wgu { get; }
        public DeviceTensor Wd { get; }

        public void Dispose()
        {
            X.Dispose();
            Wr.Dispose();
            Wgu.Dispose();
            Wd.Dispose();
        }
    }

    private static void Compare(byte[][] expected, byte[][] actual, string what)
    {
        for (int i = 0; i < StepBuffers.Names.Length; i++)
            CollectionAssert.AreEqual(expected[i], actual[i], $"{what}: {StepBuffers.Names[i]} differs from the plain step's");
    }

    /// <summary>Every output of one decode step as raw device bytes, and the two ticket counters (zero).</summary>
    private sealed class StepBuffers : IDisposable
    {
        public static readonly string[] Names = ["logits", "probs", "sel", "w", "m_sizes", "gather", "inverse", "G1", "A", "G2", "Y"];
        private readonly DeviceBuffer<byte>[] _outputs;
        private readonly DeviceBuffer<uint> _routeCounter, _downCounters;

        public StepBuffers(CudaContext ctx, ScalarType dtype, int T)
        {
            long tk = (long)T * K;
            int es = HostDtype.Size(dtype);
            long[] bytes = [T * (long)E * es, T * (long)E * 4, tk * 4, tk * es, E * 4L, tk * 4, tk * 4, tk * 2 * I * es, tk * I * es, tk * H * es, (long)T * H * es];
            _outputs = [.. bytes.Select(n => new DeviceBuffer<byte>(ctx, n))];
            _routeCounter = new DeviceBuffer<uint>(ctx, MoeKernels.RoutingDecodeCounters(MoeKernels.RoutingDecodeMaxTokens));
            _downCounters = new DeviceBuffer<uint>(ctx, MoeKernels.DecodeCounterCount(H));
            _routeCounter.FillBytes(0);
            _downCounters.FillBytes(0);
        }

        public DeviceRange this[int i] => _outputs[i].AsRange();
        public DeviceRange RouteCounter => _routeCounter.AsRange();
        public DeviceRange DownCounters => _downCounters.AsRange();

        public void Poison(CudaStream stream)
        {
            foreach (DeviceBuffer<byte> b in _outputs) b.FillBytes(0xFF, stream);
        }

        public byte[][] Download() => [.. _outputs.Select(b => b.ToArray())];

        public void Dispose()
        {
            foreach (DeviceBuffer<byte> b in _outputs) b.Dispose();
            _routeCounter.Dispose();
            _downCounters.Dispose();
        }
    }
}
