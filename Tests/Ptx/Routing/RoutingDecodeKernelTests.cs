using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Routing;

/// <summary>
/// The one-launch decode routing (<c>moe_routing_decode</c>) against the four routing kernels it replaces (router GEMV,
/// softmax/top-k, count, stable scatter) on the same inputs: every output bitwise equal (logits, probs, sel, w,
/// m_sizes, gather, inverse), outputs poisoned before each run, and again on a second launch (the in-kernel ticket
/// counter must be back at 0).
/// </summary>
[TestClass]
public sealed class RoutingDecodeKernelTests
{
    // Qwen3-30B-A3B and Qwen3-235B-A22B router dims; odd E (a CTA with one expert); k = E; k = 1 with the largest E and
    // the smallest H; E = 1; T = 8 with k = 16; T = 9, 13 and 16 (the most the kernel takes: two rows of GEMV CTAs,
    // four tokens per warp in the top-k).
    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DataRow(ScalarType.BFloat16, 1, 128, 8, 2048, true)]
    [DataRow(ScalarType.Float16, 8, 128, 8, 4096, true)]
    [DataRow(ScalarType.BFloat16, 3, 60, 4, 1032, false)]
    [DataRow(ScalarType.Float16, 7, 3, 3, 72, true)]
    [DataRow(ScalarType.BFloat16, 5, 256, 1, 8, false)]
    [DataRow(ScalarType.Float16, 2, 1, 1, 64, true)]
    [DataRow(ScalarType.BFloat16, 8, 255, 16, 520, true)]
    [DataRow(ScalarType.BFloat16, 16, 128, 8, 2048, true)]
    [DataRow(ScalarType.Float16, 9, 128, 8, 4096, true)]
    [DataRow(ScalarType.BFloat16, 13, 61, 5, 136, false)]
    [DataRow(ScalarType.Float16, 16, 256, 32, 64, true)]
    public void RoutingDecode_IsBitwiseTheFourRoutingKernels(ScalarType dtype, int T, int E, int k, int H, bool norm)
    {
        int seed = 9100 + T * 31 + E * 7 + k + H;
        Console.WriteLine($"seed {seed}");
        var rng = new HostRandom(seed);
        float[] x = HostDtype.Rounded(dtype, rng.Normal((long)T * H));
        float[] wr = HostDtype.Rounded(dtype, rng.Normal((long)E * H, 0.05));

        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dX = DeviceTensor.Upload(ctx, dtype, x);
        using var dWr = DeviceTensor.Upload(ctx, dtype, wr);
        using var three = new RoutingOutputs(ctx, dtype, T, E, k);
        using var one = new RoutingOutputs(ctx, dtype, T, E, k);
        using var counter = new DeviceBuffer<uint>(ctx, MoeKernels.RoutingDecodeCounters(T));
        counter.FillBytes(0);
        using var routingCounts = new DeviceBuffer<byte>(ctx, MoeKernels.RoutingIndicesScratchBytes(E));
        MoeKernels kernels = MoeKernels.For(ctx);
        Assert.IsTrue(MoeKernels.CanRoutingDecode(dtype, T, E, H, dX.Range, dWr.Range, three.Logits));

        three.Poison(stream);
        kernels.RouterLogitsGemv(stream, dtype, dX.Range, dWr.Range, three.Logits, T, E, H);
        kernels.RouterForward(stream, dtype, three.Logits, three.Probs, three.Selected, three.Weights, T, E, k, norm);
        kernels.RoutingIndices(stream, three.Selected, three.MSizes, three.Gather, three.Inverse, routingCounts.AsRange(), T * k, E);
        stream.Synchronize();
        byte[][] expected = three.Download();
        Assert.AreEqual(T * k, MemoryMarshalInts(expected[4]).Sum(), "the four-kernel m_sizes must add up to TK");

        for (int run = 1; run <= 2; run++)
        {
            one.Poison(stream);
            kernels.RoutingDecode(stream, dtype, dX.Range, dWr.Range, one.Logits, one.Probs, one.Selected, one.Weights,
                one.MSizes, one.Gather, one.Inverse, counter.AsRange(), T, E, k, H, norm);
            stream.Synchronize();
            byte[][] actual = one.Download();
            for (int i = 0; i < RoutingOutputs.Names.Length; i++)
                CollectionAssert.AreEqual(expected[i], actual[i], $"run {run}: {RoutingOutputs.Names[i]} differs from the four routing kernels'");
            CollectionAssert.AreEqual(new uint[MoeKernels.RoutingDecodeCounters(T)], counter.ToArray(), $"run {run}: a ticket counter is not back at 0");
        }
    }

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    public void RoutingDecode_RejectsWhatItCannotTake_BeforeAnyLaunch()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using var dX = DeviceTensor.Upload(ctx, ScalarType.BFloat16, new float[17 * 64]);
        using var dWr = DeviceTensor.Upload(ctx, ScalarType.BFloat16, new float[4 * 64]);
        using var outs = new RoutingOutputs(ctx, ScalarType.BFloat16, 17, 4, 2);
        using var counter = new DeviceBuffer<uint>(ctx, 1);
        MoeKernels kernels = MoeKernels.For(ctx);
        var ex = Assert.ThrowsExactly<ArgumentException>(() => kernels.RoutingDecode(stream, ScalarType.BFloat16, dX.Range, dWr.Range,
            outs.Logits, outs.Probs, outs.Selected, outs.Weights, outs.MSizes, outs.Gather, outs.Inverse, counter.AsRange(), 17, 4, 2, 64, true));
        Assert.AreEqual("tokens", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentException>(() => kernels.RoutingDecode(stream, ScalarType.BFloat16, dX.Range, dWr.Range,
            outs.Logits, outs.Probs, outs.Selected, outs.Weights, outs.MSizes, outs.Gather, outs.Inverse, DeviceRange.Null, 8, 4, 2, 64, true));
        Assert.AreEqual("counter", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentException>(() => kernels.RoutingDecode(stream, ScalarType.BFloat16, dX.Range, dWr.Range,
            outs.Logits, outs.Probs, outs.Selected, outs.Weights, outs.MSizes, outs.Gather, outs.Inverse, counter.AsRange(), 9, 4, 2, 64, true));
        Assert.AreEqual("counter", ex.ParamName, "T = 9 takes three counters (two rows of CTAs and the grid's)");
    }

    [TestMethod]
    [DataRow(ScalarType.BFloat16, 8, 128, 2048, true, DisplayName = "T = 8, Qwen3 dims")]
    [DataRow(ScalarType.Float16, 1, 256, 8, true, DisplayName = "E = 256, H = 8")]
    [DataRow(ScalarType.BFloat16, 16, 128, 2048, true, DisplayName = "T = 16 (two rows of GEMV CTAs)")]
    [DataRow(ScalarType.BFloat16, 17, 128, 2048, false, DisplayName = "T = 17")]
    [DataRow(ScalarType.BFloat16, 0, 128, 2048, false, DisplayName = "T = 0")]
    [DataRow(ScalarType.BFloat16, 1, 257, 2048, false, DisplayName = "E = 257")]
    [DataRow(ScalarType.Float32, 1, 128, 2048, false, DisplayName = "fp32")]
    [DataRow(ScalarType.BFloat16, 1, 128, 2044, false, DisplayName = "H not a multiple of 8")]
    public void CanRoutingDecode_FollowsTheKernelsLimits(ScalarType dtype, int T, int E, int H, bool expected)
    {
        var aligned = new DeviceRange(0x1000, DeviceRange.UnknownSize);
        Assert.AreEqual(expected, MoeKernels.CanRoutingDecode(dtype, T, E, H, aligned, aligned, aligned));
    }

    [TestMethod]
    [DataRow(1, 1)]
    [DataRow(8, 1)]
    [DataRow(9, 3)]
    [DataRow(16, 3)]
    public void RoutingDecodeCounters_OnePerRowOfCtas_AndOneAcrossRows(int tokens, int expected)
    {
        Assert.AreEqual(expected, MoeKernels.RoutingDecodeCounters(tokens));
    }

    [TestMethod]
    public void CanRoutingDecode_RejectsUnalignedPointers()
    {
        var aligned = new DeviceRange(0x1000, DeviceRange.UnknownSize);
        var odd = new DeviceRange(0x1008, DeviceRange.UnknownSize);
        Assert.IsFalse(MoeKernels.CanRoutingDecode(ScalarType.BFloat16, 1, 128, 2048, odd, aligned, aligned));
        Assert.IsFalse(MoeKernels.CanRoutingDecode(ScalarType.BFloat16, 1, 128, 2048, aligned, odd, aligned));
        Assert.IsFalse(MoeKernels.CanRoutingDecode(ScalarType.BFloat16, 1, 128, 2048, aligned, aligned, odd));
    }

    private static int[] MemoryMarshalInts(byte[] bytes) => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(bytes).ToArray();

    /// <summary>The seven routing outputs of one run, as raw device bytes.</summary>
    private sealed class RoutingOutputs : IDisposable
    {
        public static readonly string[] Names = ["logits", "probs", "sel", "w", "m_sizes", "gather", "inverse"];
        private readonly DeviceBuffer<byte>[] _buffers;

        public RoutingOutputs(CudaContext ctx, ScalarType dtype, int tokens, int experts, int topK)
        {
            long te = (long)tokens * experts, tk = (long)tokens * topK;
            int es = HostDtype.Size(dtype);
            long[] bytes = [te * es, te * 4, tk * 4, tk * es, experts * 4L, tk * 4, tk * 4];
            _buffers = [.. bytes.Select(b => new DeviceBuffer<byte>(ctx, b))];
        }

        public DeviceRange Logits => _buffers[0].AsRange();     // [T,E] dtype
        public DeviceRange Probs => _buffers[1].AsRange();      // [T,E] f32
        public DeviceRange Selected => _buffers[2].AsRange();   // [T,k] i32
        public DeviceRange Weights => _buffers[3].AsRange();    // [T,k] dtype
        public DeviceRange MSizes => _buffers[4].AsRange();     // [E] i32
        public DeviceRange Gather => _buffers[5].AsRange();     // [TK] i32
        public DeviceRange Inverse => _buffers[6].AsRange();    // [TK] i32

        public void Poison(CudaStream stream)
        {
            foreach (DeviceBuffer<byte> b in _buffers) b.FillBytes(0xFF, stream);
        }

        public byte[][] Download() => [.. _buffers.Select(b => b.ToArray())];

        public void Dispose()
        {
            foreach (DeviceBuffer<byte> b in _buffers) b.Dispose();
        }
    }
}
