using MoeNative.Interop;

namespace MoeNative.Tests.Interop.Device;

[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class DeviceBufferGpuTests
{
    [TestMethod]
    [DataRow(1)]
    [DataRow(1000)]
    [DataRow((1 << 20) + 3)]
    public void SyncRoundTrip_RandomData_ComesBackBitExact(int length)
    {
        CudaContext ctx = GpuTest.RequireContext();
        var random = new Random(length);
        float[] data = Enumerable.Range(0, length).Select(_ => (float)random.NextDouble() * 100 - 50).ToArray();
        using var buffer = new DeviceBuffer<float>(ctx, length);
        Assert.AreEqual(length * 4L, buffer.SizeInBytes);
        buffer.FillBytes(0xFF);
        buffer.CopyFromHost(data);
        CollectionAssert.AreEqual(data, buffer.ToArray());
    }

    [TestMethod]
    [DataRow(257, 0, 257)]
    [DataRow(257, 13, 100)]
    [DataRow(257, 256, 1)]
    [DataRow(100_003, 4_097, 50_001)]
    public void AsyncCopiesWithOffsets_OnAStream_TouchOnlyTheirRange(int length, int offset, int count)
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        var random = new Random(offset * 31 + count);
        int[] data = Enumerable.Range(0, count).Select(_ => random.Next()).ToArray();
        using var buffer = new DeviceBuffer<int>(ctx, length);
        buffer.FillBytes(0xFF, stream);                       // every int = -1
        buffer.CopyFromHostAsync(data, stream, dstOffset: offset);
        int[] window = new int[count];
        int[] whole = new int[length];
        buffer.CopyToHostAsync(window, stream, srcOffset: offset);
        buffer.CopyToHostAsync(whole, stream);
        stream.Synchronize();

        CollectionAssert.AreEqual(data, window);
        for (int i = 0; i < length; i++)
            Assert.AreEqual(i >= offset && i < offset + count ? data[i - offset] : -1, whole[i], $"element {i}");
        Assert.AreEqual(buffer.DevicePointer + (ulong)offset * 4, buffer.PointerAt(offset));
    }

    [TestMethod]
    public void DeviceToDeviceCopy_AndPoison_AreVisible()
    {
        CudaContext ctx = GpuTest.RequireContext();
        float[] data = Enumerable.Range(0, 999).Select(i => i * 0.5f).ToArray();
        using DeviceBuffer<float> source = DeviceBuffer<float>.FromHost(ctx, data);
        using var target = new DeviceBuffer<float>(ctx, 1000);
        target.FillBytes(0xFF);
        Assert.IsTrue(target.ToArray().All(float.IsNaN), "0xFF poison must read back as NaN");
        target.CopyFrom(source);
        float[] back = target.ToArray();
        CollectionAssert.AreEqual(data, back[..999]);
        Assert.IsTrue(float.IsNaN(back[999]), "the element past the copied range must stay poisoned");
    }

    [TestMethod]
    public void CheckedArguments_OnARealBuffer()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var buffer = new DeviceBuffer<float>(ctx, 10);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => buffer.CopyFromHost(new float[11]));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => buffer.CopyFromHost(new float[2], dstOffset: 9));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => buffer.CopyToHost(new float[1], srcOffset: -1));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => buffer.PointerAt(11));
        using var longer = new DeviceBuffer<float>(ctx, 11);
        Assert.ThrowsExactly<ArgumentException>(() => buffer.CopyFrom(longer));
        buffer.Dispose();
        Assert.ThrowsExactly<ObjectDisposedException>(() => buffer.CopyFromHost(new float[1]));
        Assert.ThrowsExactly<ObjectDisposedException>(() => _ = buffer.DevicePointer);
    }

    [TestMethod]
    public void EmptyBuffer_HasNoPointerAndCopiesNothing()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var buffer = new DeviceBuffer<float>(ctx, 0);
        Assert.AreEqual(0UL, buffer.DevicePointer);
        buffer.CopyFromHost([]);
        Assert.IsEmpty(buffer.ToArray());
    }
}
