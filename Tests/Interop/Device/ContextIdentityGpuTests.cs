using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Tests.Interop.Device;

/// <summary>
/// The one context identity rule (CudaContext.EnsureSameContext): a stream or buffer of a second CudaContext object
/// on the same device, or of another device, is rejected by every layer before any launch. "Before any launch" is
/// checked on outputs poisoned with 0xFF through the right context: after the rejected call and a synchronise, every
/// byte is still 0xFF.
/// </summary>
[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class ContextIdentityGpuTests
{
    private static readonly MoeConfig Tiny = MoeConfig.Preset("tiny");

    private static (CudaContext Main, CudaContext Second) Contexts()
    {
        CudaContext main = GpuTest.RequireContext();
        return (main, CudaContext.Create(main.Ordinal));
    }

    private static DeviceBuffer<byte> Poisoned(CudaContext context, long bytes)
    {
        var buffer = new DeviceBuffer<byte>(context, bytes);
        buffer.FillBytes(0xFF);
        context.Synchronize();
        return buffer;
    }

    private static void AssertStillPoisoned(CudaContext context, DeviceBuffer<byte> buffer, string what)
    {
        context.Synchronize();
        byte[] bytes = buffer.ToArray();
        int first = Array.FindIndex(bytes, b => b != 0xFF);
        Assert.AreEqual(-1, first, $"{what}: byte {first} was written although the call was rejected");
    }

    [TestMethod]
    public void SecondContextObject_SameDevice_WrapsTheSamePrimaryContext_ButIsAnotherContext()
    {
        (CudaContext main, CudaContext second) = Contexts();
        using (second)
        {
            Assert.AreEqual(main.Handle, second.Handle, "both objects retain the device's primary context");
            Assert.IsTrue(main.IsSameContext(main));
            Assert.IsFalse(main.IsSameContext(second));
            var ex = Assert.ThrowsExactly<ArgumentException>(() => main.EnsureSameContext(second, "stream", "the block"));
            Assert.AreEqual("stream", ex.ParamName);
            StringAssert.Contains(ex.Message, "second CudaContext object");
        }
    }

    [TestMethod]
    public void GroupedGemm_StreamOfSecondContext_IsRejectedBeforeLaunch()
    {
        (CudaContext main, CudaContext second) = Contexts();
        using (second)
        using (var foreign = new CudaStream(second))
        {
            const int n = 16, k = 16, e = 1, rows = 16;
            using var a = new DeviceBuffer<BFloat16>(main, rows * k);
            using var w = new DeviceBuffer<BFloat16>(main, e * n * k);
            using var mSizes = DeviceBuffer<int>.FromHost(main, [rows]);
            using DeviceBuffer<byte> c = Poisoned(main, rows * n * 2);
            var grouped = new GroupedRows(mSizes.DevicePointer, 0, rows, e, 1);
            var ex = Assert.ThrowsExactly<ArgumentException>(() => GroupedGemm.For(main).ForwardNT(foreign, ScalarType.BFloat16, null,
                a, w, c, grouped, n, k, RowSource.Identity, RowTarget.Identity, DeviceRange.Null));
            Assert.AreEqual("stream", ex.ParamName);
            AssertStillPoisoned(main, c, "C");
        }
    }

    [TestMethod]
    public void SmallKernels_StreamOfSecondContext_IsRejectedBeforeLaunch()
    {
        (CudaContext main, CudaContext second) = Contexts();
        using (second)
        using (var foreign = new CudaStream(second))
        {
            const int t = 8, e = 4, h = 64;
            using var x = new DeviceBuffer<BFloat16>(main, t * h);
            using var wr = new DeviceBuffer<BFloat16>(main, e * h);
            using DeviceBuffer<byte> logits = Poisoned(main, t * e * 2);
            MoeKernels kernels = MoeKernels.For(main);
            var ex = Assert.ThrowsExactly<ArgumentException>(() =>
                kernels.RouterLogitsGemv(foreign, ScalarType.BFloat16, x, wr, logits, t, e, h));
            Assert.AreEqual("stream", ex.ParamName);
            using DeviceBuffer<byte> act = Poisoned(main, t * 8 * 2);
            ex = Assert.ThrowsExactly<ArgumentException>(() => kernels.SiluMulForward(foreign, ScalarType.BFloat16, x, act, t, 8));
            Assert.AreEqual("stream", ex.ParamName);
            AssertStillPoisoned(main, logits, "router logits");
            AssertStillPoisoned(main, act, "SwiGLU output");
        }
    }

    [TestMethod]
    public void Kernel_StreamOfSecondContext_IsRejected()
    {
        (CudaContext main, CudaContext second) = Contexts();
        using (second)
        using (var foreign = new CudaStream(second))
        {
            const int t = 8, e = 4, h = 64;
            using var x = new DeviceBuffer<BFloat16>(main, t * h);
            using var wr = new DeviceBuffer<BFloat16>(main, e * h);
            using DeviceBuffer<byte> logits = Poisoned(main, t * e * 2);
            PtxKernel<RouterLogitsGemvArgs> kernel = PtxModuleCache.GetKernel<RouterLogitsGemvArgs>(main, MoeKernelModules.RouterLogitsGemv(),
                MoeKernelModules.RouterLogitsGemvEntry(ScalarType.BFloat16));
            var args = new RouterLogitsGemvArgs { X = x.DevicePointer, Wr = wr.DevicePointer, Logits = logits.DevicePointer, Tokens = t, Experts = e, Hidden = h };
            var ex = Assert.ThrowsExactly<ArgumentException>(() => kernel.Launch(foreign, new Dim3(2, 1), new Dim3(128), 0, in args));
            Assert.AreEqual("stream", ex.ParamName);
            AssertStillPoisoned(main, logits, "router logits");
        }
    }

    [TestMethod]
    [DataRow(8, DisplayName = "T=8 (router GEMV path)")]
    [DataRow(300, DisplayName = "T=300 (tiled router GEMM path)")]
    public void FusedBlock_StreamOrBufferOfSecondContext_IsRejectedBeforeLaunch(int tokens)
    {
        (CudaContext main, CudaContext second) = Contexts();
        using (second)
        using (var foreign = new CudaStream(second))
        using (var stream = new CudaStream(main))
        using (var block = new Qwen3MoeFusedBlock(main, MoeWeights.Random(Tiny, 7, ScalarType.BFloat16), ScalarType.BFloat16))
        {
            long th = (long)tokens * Tiny.HiddenSize;
            using var x = new DeviceBuffer<BFloat16>(main, th);
            using var y = new DeviceBuffer<BFloat16>(main, th);
            using var xForeign = new DeviceBuffer<BFloat16>(second, th);
            block.Reserve(tokens);
            y.FillBytes(0xFF);
            main.Synchronize();
            var ex = Assert.ThrowsExactly<ArgumentException>(() => block.Forward(foreign, x, y, tokens));
            Assert.AreEqual("stream", ex.ParamName);
            ex = Assert.ThrowsExactly<ArgumentException>(() => block.Forward(stream, xForeign, y, tokens));
            Assert.AreEqual("x", ex.ParamName);
            main.Synchronize();
            ushort[] bits = System.Runtime.InteropServices.MemoryMarshal.Cast<BFloat16, ushort>(y.ToArray()).ToArray();
            Assert.IsTrue(bits.All(b => b == 0xFFFF), "y was written although the forward was rejected");
        }
    }

    [TestMethod]
    public void CublasDeviceBlock_StreamOfSecondContext_IsRejectedBeforeLaunch()
    {
        (CudaContext main, CudaContext second) = Contexts();
        using (second)
        using (var foreign = new CudaStream(second))
        using (var block = new CublasDeviceGroupedBlock(main, MoeWeights.Random(Tiny, 7, ScalarType.BFloat16), ScalarType.BFloat16))
        {
            const int tokens = 8;
            long th = (long)tokens * Tiny.HiddenSize;
            using var x = new DeviceBuffer<BFloat16>(main, th);
            using var y = new DeviceBuffer<BFloat16>(main, th);
            y.FillBytes(0xFF);
            main.Synchronize();
            var ex = Assert.ThrowsExactly<ArgumentException>(() => block.Forward(foreign, x, y, tokens));
            Assert.AreEqual("stream", ex.ParamName);
            main.Synchronize();
            ushort[] bits = System.Runtime.InteropServices.MemoryMarshal.Cast<BFloat16, ushort>(y.ToArray()).ToArray();
            Assert.IsTrue(bits.All(b => b == 0xFFFF), "y was written although the forward was rejected");
        }
    }

    [TestMethod]
    public void StreamOfAnotherDevice_IsRejected()
    {
        CudaContext main = GpuTest.RequireContext();
        int other = main.Ordinal == 0 ? 1 : 0;
        if (!Gpu.TryGetDevice(other, out _, out string reason))
            Assert.Inconclusive($"Needs a second GPU (device {other}): {reason}");
        using var otherContext = CudaContext.Create(other);
        using var foreign = new CudaStream(otherContext);
        var ex = Assert.ThrowsExactly<ArgumentException>(() => main.EnsureSameContext(otherContext, "stream", "the block"));
        StringAssert.Contains(ex.Message, $"device {other}");
        const int t = 8, e = 4, h = 64;
        using var x = new DeviceBuffer<BFloat16>(main, t * h);
        using var wr = new DeviceBuffer<BFloat16>(main, e * h);
        using DeviceBuffer<byte> logits = Poisoned(main, t * e * 2);
        ex = Assert.ThrowsExactly<ArgumentException>(() =>
            MoeKernels.For(main).RouterLogitsGemv(foreign, ScalarType.BFloat16, x, wr, logits, t, e, h));
        Assert.AreEqual("stream", ex.ParamName);
        AssertStillPoisoned(main, logits, "router logits");
    }
}
