using MoeNative.Interop;

namespace MoeNative.Tests.Interop.Device;

[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class PtxKernelGpuTests
{
    [TestMethod]
    [DataRow(1)]
    [DataRow(127)]
    [DataRow(128)]
    [DataRow(1000)]     // not a multiple of the block
    [DataRow(100_003)]
    public void AffineKernel_WritesEveryElementAndNothingElse(int n)
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using CudaModule module = CudaModule.Load(ctx, TestKernels.AffinePtx, "interop-test-affine");
        CudaKernel kernel = module.GetKernel(TestKernels.AffineEntry, TestKernels.AffineParameters);
        Assert.AreEqual(TestKernels.AffineEntry, kernel.Name);

        var random = new Random(n);
        float[] x = Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 8 - 4)).ToArray();
        const float a = 1.75f, b = -0.3125f;
        using DeviceBuffer<float> xDev = DeviceBuffer<float>.FromHost(ctx, x);
        using var yDev = new DeviceBuffer<float>(ctx, n + 1);  // one extra element that must stay poisoned
        yDev.FillBytes(0xFF);

        TestKernels.LaunchAffine(kernel, stream, xDev, yDev, a, b, n);
        stream.Synchronize();
        float[] y = yDev.ToArray();

        for (int i = 0; i < n; i++)
            Assert.AreEqual(BitConverter.SingleToInt32Bits(MathF.FusedMultiplyAdd(a, x[i], b)), BitConverter.SingleToInt32Bits(y[i]), $"element {i}");
        Assert.IsTrue(float.IsNaN(y[n]), "the kernel wrote past n");
    }

    [TestMethod]
    public void LaunchEx_GivesTheSameResultAsLaunch()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using CudaModule module = CudaModule.Load(ctx, TestKernels.AffinePtx, "interop-test-affine-ex");
        CudaKernel kernel = module.GetKernel(TestKernels.AffineEntry, TestKernels.AffineParameters);
        const int n = 4_099;
        float[] x = Enumerable.Range(0, n).Select(i => i * 0.25f - 100).ToArray();
        using DeviceBuffer<float> xDev = DeviceBuffer<float>.FromHost(ctx, x);
        using var yDev = new DeviceBuffer<float>(ctx, n);
        yDev.FillBytes(0xFF);
        var args = new TestKernels.AffineArgs { X = xDev.DevicePointer, Y = yDev.DevicePointer, A = 3f, B = 1f, N = n };
        kernel.LaunchEx(stream, TestKernels.GridFor(n), new Dim3(TestKernels.BlockSize), 0, in args, new LaunchAttributes());
        stream.Synchronize();
        float[] y = yDev.ToArray();
        for (int i = 0; i < n; i++)
            Assert.AreEqual(MathF.FusedMultiplyAdd(3f, x[i], 1f), y[i], $"element {i}");
    }

    [TestMethod]
    [DataRow(1u)]
    [DataRow(2u)]
    [DataRow(4u)]
    public void LaunchEx_ClusterAttribute_ReachesTheKernel(uint clusterSize)
    {
        using CudaModule module = LoadClusterModule("interop-test-cluster");
        CudaContext ctx = module.Context;
        CudaKernel kernel = module.GetKernel(TestKernels.ClusterShapeEntry, TestKernels.ClusterShapeParameters);
        using var stream = new CudaStream(ctx);
        const int ctas = 16;
        using var outDev = new DeviceBuffer<uint>(ctx, ctas);
        var args = new TestKernels.ClusterShapeArgs { Out = outDev.DevicePointer };

        outDev.FillBytes(0xFF);
        kernel.Launch(stream, new Dim3(ctas), new Dim3(32), 0, in args);
        stream.Synchronize();
        CollectionAssert.AreEqual(Enumerable.Repeat(1u, ctas).ToArray(), outDev.ToArray(), "plain launch: one CTA per cluster");

        outDev.FillBytes(0xFF);
        kernel.LaunchEx(stream, new Dim3(ctas), new Dim3(32), 0, in args, new LaunchAttributes(ClusterDim: new Dim3(clusterSize)));
        stream.Synchronize();
        CollectionAssert.AreEqual(Enumerable.Repeat(clusterSize, ctas).ToArray(), outDev.ToArray(), $"cluster of {clusterSize}");
    }

    [TestMethod]
    [DataRow(1u)]
    [DataRow(2u)]
    public void MaxActiveClusters_CoversAtMostTheSmsAndAtLeastOneCluster(uint clusterSize)
    {
        using CudaModule module = LoadClusterModule("interop-test-cluster-occupancy");
        CudaContext ctx = module.Context;
        CudaKernel kernel = module.GetKernel(TestKernels.ClusterShapeEntry, TestKernels.ClusterShapeParameters);
        // 1024 threads and 200 KiB: one CTA per SM, so clusters x size is the number of SMs that can be paired
        kernel.SetMaxDynamicSharedMemory(200 * 1024);
        int clusters = kernel.MaxActiveClusters(new Dim3(1024), 200 * 1024, clusterSize);
        Console.WriteLine($"{ctx.Name}: {clusters} clusters of {clusterSize} at one CTA per SM ({ctx.MultiprocessorCount} SMs)");
        Assert.IsGreaterThanOrEqualTo(1, clusters);
        Assert.IsLessThanOrEqualTo(ctx.MultiprocessorCount, clusters * (int)clusterSize);
        if (clusterSize == 1)
            Assert.AreEqual(ctx.MultiprocessorCount, clusters, "clusters of one are CTAs: one per SM");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernel.MaxActiveClusters(new Dim3(1024), 200 * 1024, 0));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernel.MaxActiveClusters(new Dim3(2048), 0, clusterSize));
    }

    /// <summary>The cluster test kernel's module, loaded as <paramref name="name"/> on a 9.0+ card (Inconclusive elsewhere).</summary>
    private static CudaModule LoadClusterModule(string name)
    {
        CudaContext ctx = GpuTest.RequireContext();
        if (ctx.ComputeCapability.Major < 9)
            Assert.Inconclusive($"Thread-block clusters need sm_90+; this is {ctx.Info.SmName}.");
        return CudaModule.Load(ctx, TestKernels.ClusterShapePtx, name);
    }

    [TestMethod]
    public void KernelAttributes_AreReadable()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using CudaModule module = CudaModule.Load(ctx, TestKernels.AffinePtx, "interop-test-affine-attr");
        CudaKernel kernel = module.GetKernel(TestKernels.AffineEntry, TestKernels.AffineParameters);
        Assert.IsGreaterThan(0, kernel.NumRegisters);
        Assert.AreEqual(0, kernel.LocalBytesPerThread, "no spills");
        Assert.IsGreaterThanOrEqualTo(128, kernel.MaxThreadsPerBlock);
        kernel.SetMaxDynamicSharedMemory(64 * 1024);
        Assert.AreEqual(64 * 1024, kernel.GetAttribute(CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES));
        // The driver's JIT cache may serve the module without compiling (empty info log); a fresh compile with
        // CU_JIT_LOG_VERBOSE names the entry.
        if (module.InfoLog.Length > 0)
            Assert.Contains(TestKernels.AffineEntry, module.InfoLog, "verbose JIT log names the entry");
    }

    [TestMethod]
    public void WrongArgsStruct_IsRefusedBeforeTheDriver()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using CudaModule module = CudaModule.Load(ctx, TestKernels.AffinePtx, "interop-test-affine-wrong");
        CudaKernel kernel = module.GetKernel(TestKernels.AffineEntry, TestKernels.AffineParameters);
        var wrong = new TestKernels.WrongArgs();
        var e = Assert.ThrowsExactly<ArgumentException>(() => kernel.Launch(stream, new Dim3(1), new Dim3(32), 0, in wrong));
        Assert.Contains(TestKernels.AffineEntry, e.Message);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernel.Launch(stream, new Dim3(0), new Dim3(32), 0, new TestKernels.AffineArgs()));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => kernel.Launch(stream, new Dim3(1), new Dim3(2048), 0, new TestKernels.AffineArgs()));
    }

    /// <summary>The parameter count is declared, never probed: a kernel without one does not launch, and a count
    /// larger than the entry's is refused with one in-range driver query (no call past the last parameter).</summary>
    [TestMethod]
    public void ParameterCount_UndeclaredOrTooLarge_IsRefused()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using CudaModule module = CudaModule.Load(ctx, TestKernels.AffinePtx, "interop-test-affine-count");
        var args = new TestKernels.AffineArgs();
        CudaKernel undeclared = module.GetKernel(TestKernels.AffineEntry);
        Assert.IsNull(undeclared.ParameterCount);
        var e1 = Assert.ThrowsExactly<InvalidOperationException>(() => undeclared.Launch(stream, new Dim3(1), new Dim3(32), 0, in args));
        Assert.Contains("parameter count", e1.Message);
        CudaKernel tooMany = module.GetKernel(TestKernels.AffineEntry, TestKernels.AffineParameters + 1);
        var e2 = Assert.ThrowsExactly<ArgumentException>(() => tooMany.Launch(stream, new Dim3(1), new Dim3(32), 0, in args));
        Assert.Contains("fewer than the 6 parameters", e2.Message);
    }

    [TestMethod]
    public void BrokenPtx_RaisesJitExceptionWithLogAndModuleName()
    {
        CudaContext ctx = GpuTest.RequireContext();
        var e = Assert.ThrowsExactly<CudaJitException>(() => CudaModule.Load(ctx, TestKernels.BrokenPtx, "interop-test-broken"));
        Assert.AreEqual("interop-test-broken", e.ModuleName);
        Assert.AreEqual("cuModuleLoadDataEx", e.ApiName);
        Assert.Contains("error", e.Log, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("line 10", e.Log);
        Assert.Contains("f_undeclared_register", e.Log);
        Assert.Contains(e.Log, e.Message);
        Assert.Contains("interop-test-broken", e.Message);
        Assert.StartsWith("CUDA_ERROR_", e.ErrorName);
    }

    [TestMethod]
    public void MissingEntry_RaisesCudaExceptionNamingIt()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using CudaModule module = CudaModule.Load(ctx, TestKernels.AffinePtx, "interop-test-affine-missing");
        var e = Assert.ThrowsExactly<CudaException>(() => module.GetKernel("no_such_entry"));
        Assert.AreEqual(CUresult.CUDA_ERROR_NOT_FOUND, e.Result);
        Assert.AreEqual("CUDA_ERROR_NOT_FOUND", e.ErrorName);
        Assert.AreEqual("cuModuleGetFunction", e.ApiName);
        Assert.Contains("no_such_entry", e.Message);
    }
}
