using MoeNative.Interop;

namespace MoeNative.Tests.Interop.Device;

[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class EventAndGraphGpuTests
{
    [TestMethod]
    public void Events_TimeAPositiveIntervalAroundRealWork()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using CudaModule module = CudaModule.Load(ctx, TestKernels.AffinePtx, "interop-test-events");
        CudaKernel kernel = module.GetKernel(TestKernels.AffineEntry, TestKernels.AffineParameters);
        const int n = 1 << 22;
        using var x = new DeviceBuffer<float>(ctx, n);
        using var y = new DeviceBuffer<float>(ctx, n);
        x.FillBytes(0, stream);
        using var start = new CudaEvent(ctx);
        using var end = new CudaEvent(ctx);

        start.Record(stream);
        for (int i = 0; i < 50; i++)
            TestKernels.LaunchAffine(kernel, stream, x, y, 1f, i, n);
        end.Record(stream);
        float ms = CudaEvent.ElapsedMilliseconds(start, end);

        Assert.IsTrue(end.IsComplete);
        Assert.IsGreaterThan(0f, ms);
        Assert.IsLessThan(10_000f, ms);
        Assert.AreEqual(49f, y.ToArray()[n - 1], "the last launch's b");
    }

    [TestMethod]
    public void CapturedGraph_ReplaysToTheSameResultAsDirectLaunches()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using CudaModule module = CudaModule.Load(ctx, TestKernels.AffinePtx, "interop-test-graph");
        CudaKernel kernel = module.GetKernel(TestKernels.AffineEntry, TestKernels.AffineParameters);
        const int n = 10_007;
        var random = new Random(7);
        float[] x = Enumerable.Range(0, n).Select(_ => (float)random.NextDouble()).ToArray();
        using DeviceBuffer<float> xDev = DeviceBuffer<float>.FromHost(ctx, x);
        using var tmp = new DeviceBuffer<float>(ctx, n);
        using var yDev = new DeviceBuffer<float>(ctx, n);

        // Two dependent launches: tmp = 2x + 1, y = -0.5·tmp + 3.
        void Work(CudaStream s)
        {
            TestKernels.LaunchAffine(kernel, s, xDev, tmp, 2f, 1f, n);
            TestKernels.LaunchAffine(kernel, s, tmp, yDev, -0.5f, 3f, n);
        }

        yDev.FillBytes(0xFF);
        Work(stream);
        stream.Synchronize();
        float[] direct = yDev.ToArray();
        Assert.IsFalse(direct.Any(float.IsNaN), "direct launches left poison");

        yDev.FillBytes(0xFF);
        tmp.FillBytes(0xFF);
        using CudaGraph graph = CudaGraph.Capture(stream, Work);
        stream.Synchronize();
        Assert.IsTrue(yDev.ToArray().All(float.IsNaN), "capture must not execute the work");

        for (int replay = 0; replay < 3; replay++)
        {
            yDev.FillBytes(0xFF, stream);
            graph.Launch(stream);
            stream.Synchronize();
            float[] replayed = yDev.ToArray();
            for (int i = 0; i < n; i++)
                Assert.AreEqual(BitConverter.SingleToInt32Bits(direct[i]), BitConverter.SingleToInt32Bits(replayed[i]), $"replay {replay}, element {i}");
        }
    }

    [TestMethod]
    public void CaptureWorkThatThrows_EndsTheCaptureAndRethrows()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        Assert.ThrowsExactly<InvalidOperationException>(() => CudaGraph.Capture(stream, _ => throw new InvalidOperationException("boom")));
        // The stream is usable again (not stuck in capture mode).
        using var buffer = new DeviceBuffer<int>(ctx, 4);
        buffer.FillBytes(0, stream);
        stream.Synchronize();
        CollectionAssert.AreEqual(new int[4], buffer.ToArray());
    }
}
