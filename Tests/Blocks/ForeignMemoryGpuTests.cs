using System.Runtime.InteropServices;
using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Interop.Native;
using MoeNative.Reference;

namespace MoeNative.Tests.Blocks;

/// <summary>
/// The fused block on memory and a stream that MoeNative did not create, as another CUDA library would hand them
/// over: raw <c>cuMemAlloc</c> allocations (weights, activations, gradients) wrapped as non-owning views, a raw
/// non-blocking <c>cuStreamCreate</c> stream wrapped, the context taken from the thread. Results must equal, bit for
/// bit, the same block run on MoeNative's own buffers; an in-place write through the weights' views must change the
/// next forward; disposing every view must free nothing (the raw memory and stream are freed here afterwards).
/// </summary>
[TestClass]
[TestCategory(GpuTest.Category)]
[DoNotParallelize]
public sealed unsafe class ForeignMemoryGpuTests
{
    /// <summary>A raw allocation holding <paramref name="values"/> as bf16 (cuMemAlloc + cuMemcpyHtoD, no MoeNative object).</summary>
    private static ulong RawUpload(float[] values)
    {
        ushort[] bits = values.Select(BFloat16.RoundToBits).ToArray();
        ulong p;
        CuDriver.cuMemAlloc(&p, (nuint)(bits.Length * 2)).Check("cuMemAlloc");
        fixed (ushort* src = bits) CuDriver.cuMemcpyHtoD(p, src, (nuint)(bits.Length * 2)).Check("cuMemcpyHtoD");
        return p;
    }

    private static ulong RawAlloc(long elements)
    {
        ulong p;
        CuDriver.cuMemAlloc(&p, (nuint)(elements * 2)).Check("cuMemAlloc");
        CuDriver.cuMemsetD8(p, 0xFF, (nuint)(elements * 2)).Check("cuMemsetD8"); // poison: NaN in bf16
        return p;
    }

    private static float[] RawDownload(ulong p, long elements)
    {
        var bits = new ushort[elements];
        fixed (ushort* dst = bits) CuDriver.cuMemcpyDtoH(dst, p, (nuint)(elements * 2)).Check("cuMemcpyDtoH");
        return bits.Select(b => (float)BFloat16.FromBits(b)).ToArray();
    }

    [TestMethod]
    public void FusedBlock_OnRawCuMemAllocAndAForeignStream_EqualsOwnBuffers()
    {
        GpuTest.RequireContext().MakeCurrent();
        using CudaContext ctx = CudaContext.FromCurrent(); // the primary context the "other library" made current
        MoeConfig c = MoeConfig.Preset("small");
        const int tokens = 37, seed = 9100;
        MoeWeights w = MoeWeights.Random(c, seed, ScalarType.BFloat16);
        float[] x = TensorRandom.Normal((long)tokens * c.HiddenSize, seed + 1, 1f, ScalarType.BFloat16);   // [T,H]
        float[] dY = TensorRandom.Normal((long)tokens * c.HiddenSize, seed + 2, 1f, ScalarType.BFloat16);  // [T,H]
        long th = (long)tokens * c.HiddenSize;

        // ---- the other library's memory and stream --------------------------------------------------------------
        ulong router = RawUpload(w.Gate), gateUp = RawUpload(w.GateUpProj), down = RawUpload(w.DownProj), xRaw = RawUpload(x), dYRaw = RawUpload(dY);
        ulong yRaw = RawAlloc(th), dXRaw = RawAlloc(th), dRouter = RawAlloc(c.GateElements), dGateUp = RawAlloc(c.GateUpProjElements), dDown = RawAlloc(c.DownProjElements);
        IntPtr rawStream;
        CuDriver.cuStreamCreate(&rawStream, CuDriver.CU_STREAM_NON_BLOCKING).Check("cuStreamCreate");
        // NOTE: the uploads and poison memsets ran on the legacy stream, which a non-blocking stream does not wait for.
        ctx.Synchronize();
        try
        {
            using (CudaStream stream = CudaStream.Wrap(ctx, rawStream))
            using (Qwen3MoeDeviceWeights weights = Qwen3MoeDeviceWeights.FromDevice(c,
                DeviceBuffer<BFloat16>.Wrap(ctx, router, c.GateElements), DeviceBuffer<BFloat16>.Wrap(ctx, gateUp, c.GateUpProjElements),
                DeviceBuffer<BFloat16>.Wrap(ctx, down, c.DownProjElements)))
            using (var block = new Qwen3MoeFusedBlock(weights))
            {
                Assert.IsFalse(stream.OwnsStream);
                var grads = new DeviceGradients<BFloat16>(DeviceBuffer<BFloat16>.Wrap(ctx, dXRaw, th), DeviceBuffer<BFloat16>.Wrap(ctx, dRouter, c.GateElements),
                    DeviceBuffer<BFloat16>.Wrap(ctx, dGateUp, c.GateUpProjElements), DeviceBuffer<BFloat16>.Wrap(ctx, dDown, c.DownProjElements));
                block.Forward(stream, DeviceBuffer<BFloat16>.Wrap(ctx, xRaw, th), DeviceBuffer<BFloat16>.Wrap(ctx, yRaw, th), tokens);
                block.Backward(stream, DeviceBuffer<BFloat16>.Wrap(ctx, dYRaw, th), grads);
                stream.Synchronize();

                // ---- the same block on MoeNative's own buffers (host API, shared context) ---------------------------
                using var own = new Qwen3MoeFusedBlock(GpuTest.RequireContext(), w, ScalarType.BFloat16);
                MoeIntermediates fwd = own.Forward(x, tokens);
                MoeGradients g = own.Backward(dY);
                CollectionAssert.AreEqual(fwd.Output, RawDownload(yRaw, th), $"y (seed {seed})");
                CollectionAssert.AreEqual(g.HiddenStates, RawDownload(dXRaw, th), "dX");
                CollectionAssert.AreEqual(g.Gate, RawDownload(dRouter, c.GateElements), "d router");
                CollectionAssert.AreEqual(g.GateUpProj, RawDownload(dGateUp, c.GateUpProjElements), "d gate_up");
                CollectionAssert.AreEqual(g.DownProj, RawDownload(dDown, c.DownProjElements), "d down");
                Assert.IsTrue(fwd.Output.Any(v => v != 0), "a non-trivial output");

                // ---- an optimizer's in-place update through the weights' views: zero down_proj -> Y = 0 ----------------
                using (DeviceBuffer<BFloat16> downView = weights.DownView<BFloat16>())
                {
                    Assert.IsFalse(downView.OwnsMemory);
                    Assert.AreEqual(down, downView.DevicePointer, "the view is the foreign memory itself");
                    downView.FillBytes(0, stream);
                }
                block.Forward(stream, DeviceBuffer<BFloat16>.Wrap(ctx, xRaw, th), DeviceBuffer<BFloat16>.Wrap(ctx, yRaw, th), tokens);
                stream.Synchronize();
                Assert.IsTrue(RawDownload(yRaw, th).All(v => v == 0), "the forward read the updated weights");
                Assert.ThrowsExactly<ArgumentException>(() => weights.RouterView<float>(), "a view in the wrong element type");
            }

            // ---- views check what they wrap -------------------------------------------------------------------------
            // 4 MiB past the end: beyond any rounding of the allocation's size by the driver.
            StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => DeviceBuffer<BFloat16>.Wrap(ctx, xRaw, th + (1L << 21))).Message, "runs past its allocation");
            using (DeviceBuffer<BFloat16> inner = DeviceBuffer<BFloat16>.Wrap(ctx, xRaw + 8, th - 4)) Assert.AreEqual(xRaw + 8, inner.DevicePointer, "a view inside an allocation");
            Assert.ThrowsExactly<ArgumentException>(() => DeviceBuffer<BFloat16>.Wrap(ctx, 0x1000, 4));
            Assert.ThrowsExactly<ArgumentException>(() => DeviceBuffer<BFloat16>.Wrap(ctx, 0, 4));
        }
        finally
        {
            // Every view is disposed: the memory and the stream are still the other library's to free (and must be valid).
            Assert.AreEqual(CUresult.CUDA_SUCCESS, CuDriver.cuStreamDestroy(rawStream), "the wrapped stream was not destroyed by MoeNative");
            foreach (ulong p in new[] { router, gateUp, down, xRaw, dYRaw, yRaw, dXRaw, dRouter, dGateUp, dDown })
                Assert.AreEqual(CUresult.CUDA_SUCCESS, CuDriver.cuMemFree(p), "the wrapped memory was not freed by MoeNative");
        }
    }

    [TestMethod]
    public void FromCurrent_WithoutACurrentContext_SaysSo()
    {
        GpuTest.RequireContext();
        Exception? failure = null;
        var thread = new Thread(() => // a fresh thread has no current context
        {
            try { StringAssert.Contains(Assert.ThrowsExactly<InvalidOperationException>(() => CudaContext.FromCurrent()).Message, "No CUDA context is current"); }
            catch (Exception e) { failure = e; }
        });
        thread.Start();
        thread.Join();
        if (failure is not null) throw failure;
    }
}
