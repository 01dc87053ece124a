using MoeNative.Interop;

namespace MoeNative.Blocks.Benchmarking;

/// <summary>
/// Measures a card's rates when it is not in <see cref="DeviceRates.FromTable"/>: device-to-device copy bandwidth
/// (read + write bytes / time, 1 GiB) and a cuBLAS bf16 GEMM (8192³, fp32 accumulate), best of several runs.
/// </summary>
internal static class RateMeasurement
{
    private const long CopyBytes = 1L << 30;
    private const int GemmSize = 8192;
    private const int Repeats = 5;

    public static DeviceRates Measure(CudaContext context)
    {
        using var stream = new CudaStream(context);
        using var start = new CudaEvent(context);
        using var end = new CudaEvent(context);

        double bestCopyMs = double.PositiveInfinity;
        using (var src = new DeviceBuffer<byte>(context, CopyBytes))
        using (var dst = new DeviceBuffer<byte>(context, CopyBytes))
        {
            src.FillBytes(1, stream);
            dst.CopyFrom(src, stream); // warm-up
            for (int i = 0; i < Repeats; i++)
            {
                start.Record(stream);
                dst.CopyFrom(src, stream);
                end.Record(stream);
                end.Synchronize();
                bestCopyMs = Math.Min(bestCopyMs, CudaEvent.ElapsedMilliseconds(start, end));
            }
        }
        double bandwidthTBps = 2.0 * CopyBytes / (bestCopyMs * 1e-3) / 1e12;

        double bestGemmMs = double.PositiveInfinity;
        long elements = (long)GemmSize * GemmSize;
        using (var a = new DeviceBuffer<BFloat16>(context, elements))
        using (var b = new DeviceBuffer<BFloat16>(context, elements))
        using (var c = new DeviceBuffer<BFloat16>(context, elements))
        using (var cublas = new CublasHandle(context))
        {
            a.FillBytes(0x3C, stream); // small finite bf16 values (0x3C3C ≈ 0.0115)
            b.FillBytes(0x3C, stream);
            cublas.SetStream(stream);
            void Gemm() => cublas.GemmEx(CublasOperation.Transpose, CublasOperation.None, GemmSize, GemmSize, GemmSize,
                1.0, a.DevicePointer, CudaDataType.BFloat16, GemmSize,
                b.DevicePointer, CudaDataType.BFloat16, GemmSize,
                0.0, c.DevicePointer, CudaDataType.BFloat16, GemmSize,
                CublasComputeType.Compute32F);
            Gemm(); // warm-up
            for (int i = 0; i < Repeats; i++)
            {
                start.Record(stream);
                Gemm();
                end.Record(stream);
                end.Synchronize();
                bestGemmMs = Math.Min(bestGemmMs, CudaEvent.ElapsedMilliseconds(start, end));
            }
        }
        double tflops = 2.0 * GemmSize * GemmSize * (double)GemmSize / (bestGemmMs * 1e-3) / 1e12;
        return new DeviceRates(context.Name, tflops, bandwidthTBps, "measured");
    }
}
