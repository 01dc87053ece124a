using System.Runtime.InteropServices;
using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Tests.Blocks;

/// <summary>
/// The two cuBLAS blocks: the host-orchestrated wrapper (<see cref="CublasGroupedBlock"/>) against the HF reference,
/// and the device-resident benchmark baseline (<see cref="CublasDeviceGroupedBlock"/>) against the grouped reference,
/// both under shared routing.
/// </summary>
[TestClass]
[TestCategory(GpuTest.Category)]
[DoNotParallelize]
public sealed class CublasGroupedBlockTests
{
    [TestMethod]
    [DataRow("small", ScalarType.BFloat16, 7)]
    [DataRow("small-k1", ScalarType.Float32, 128)]
    public void HostWrapper_MatchesHfReference(string config, ScalarType dtype, int tokens)
    {
        CudaContext context = GpuTest.RequireContext();
        ReferenceRun hf = BlockTestModels.Reference(context, "hf", config, dtype, tokens);
        using var block = new CublasGroupedBlock(context, BlockTestModels.Weights(config, dtype), dtype);
        MoeIntermediates forward = block.Forward(hf.X, hf.Forward.Routing);
        MoeGradients grads = block.Backward(hf.DY);
        var log = new ComparisonLog(dtype);
        log.Close("router_logits", forward.RouterLogits, hf.Forward.RouterLogits);
        log.Close("output", forward.Output, hf.Forward.Output);
        ThreeWayTests.CompareGradients(log, block.Config, grads, hf.Grads, RouterGradientScale.Compute(hf.Forward, hf.DY));
        log.AssertAll($"CublasGroupedBlock vs hf {config} {dtype.ShortName()} T={tokens} ({hf.Seeds})");
    }

    [TestMethod]
    [DataRow("small", ScalarType.BFloat16, 7)]
    [DataRow("small", ScalarType.Float16, 128)]
    [DataRow("small-k1", ScalarType.Float32, 128)]
    [DataRow("qwen3-30b-a3b", ScalarType.BFloat16, 128)]
    public void DeviceBaseline_MatchesGroupedReference(string config, ScalarType dtype, int tokens)
    {
        CudaContext context = GpuTest.RequireContext();
        MoeConfig c = BlockTestModels.Config(config);
        ReferenceRun grouped = BlockTestModels.Reference(context, "grouped", config, dtype, tokens);
        using var block = new CublasDeviceGroupedBlock(BlockTestModels.DeviceWeights(context, config, dtype));
        using var stream = new CudaStream(context);
        (float[] output, MoeGradients grads) = dtype switch
        {
            ScalarType.BFloat16 => Run<BFloat16>(context, stream, block, grouped, tokens),
            ScalarType.Float16 => Run<Half>(context, stream, block, grouped, tokens),
            _ => Run<float>(context, stream, block, grouped, tokens),
        };
        var log = new ComparisonLog(dtype);
        log.Close("output", output, grouped.Forward.Output);
        ThreeWayTests.CompareGradients(log, c, grads, grouped.Grads, routerScale: null);
        log.AssertAll($"CublasDeviceGroupedBlock vs grouped {config} {dtype.ShortName()} T={tokens} ({grouped.Seeds})");
    }

    private static (float[] Output, MoeGradients Gradients) Run<TElem>(CudaContext context, CudaStream stream,
        CublasDeviceGroupedBlock block, ReferenceRun reference, int tokens) where TElem : unmanaged
    {
        MoeConfig c = block.Config;
        ScalarType dt = block.DType;
        using var x = Upload<TElem>(context, reference.X, dt);
        using var dY = Upload<TElem>(context, reference.DY, dt);
        using var sel = DeviceBuffer<int>.FromHost(context, reference.Forward.Routing.Selected);
        using var w = Upload<TElem>(context, reference.Forward.Routing.Weights, dt);
        using var y = new DeviceBuffer<TElem>(context, reference.X.Length);
        using var dX = new DeviceBuffer<TElem>(context, reference.X.Length);
        using var dRouter = new DeviceBuffer<TElem>(context, c.GateElements);
        using var dGateUp = new DeviceBuffer<TElem>(context, c.GateUpProjElements);
        using var dDown = new DeviceBuffer<TElem>(context, c.DownProjElements);
        foreach (var b in new[] { y, dX, dRouter, dGateUp, dDown }) b.FillBytes(0xFF, stream);
        block.Forward(stream, x, y, tokens, new DeviceRouting<TElem>(sel, w));
        block.Backward(stream, dY, new DeviceGradients<TElem>(dX, dRouter, dGateUp, dDown));
        stream.Synchronize();
        return (Download(y, dt), new MoeGradients(c, Download(dX, dt), Download(dRouter, dt), Download(dGateUp, dt), Download(dDown, dt)));
    }

    private static DeviceBuffer<TElem> Upload<TElem>(CudaContext context, float[] values, ScalarType dt) where TElem : unmanaged
    {
        var bytes = new byte[values.LongLength * dt.SizeOf()];
        StorageConvert.ToStorageParallel(values, dt, bytes);
        return DeviceBuffer<TElem>.FromHost(context, MemoryMarshal.Cast<byte, TElem>(bytes.AsSpan()));
    }

    private static float[] Download<TElem>(DeviceBuffer<TElem> buffer, ScalarType dt) where TElem : unmanaged
    {
        var raw = new TElem[buffer.Length];
        buffer.CopyToHost(raw);
        var result = new float[raw.Length];
        StorageConvert.FromStorageParallel(MemoryMarshal.AsBytes(raw.AsSpan()), dt, result);
        return result;
    }
}
