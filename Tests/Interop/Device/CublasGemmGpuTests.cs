using System.Runtime.InteropServices;
using MoeNative.Interop;

namespace MoeNative.Tests.Interop.Device;

/// <summary>
/// cuBLAS GEMMs on row-major data in the MoE "NT" layout, C[M,N] = A[M,K]·W[N,K]ᵀ, issued column-major as
/// Cᵀ = W·Aᵀ: <c>op(A)=T on W (ld K), op(B)=N on A (ld K), m=N, n=M, k=K, ldc=N</c>. Checked against a float64
/// host product of the (already rounded) inputs by relative norm: bf16 &lt; 1e-2, fp32 &lt; 1e-5.
/// </summary>
[TestClass]
[TestCategory(GpuTest.Category)]
public sealed class CublasGemmGpuTests
{
    private static double Tolerance(ScalarType t) => t == ScalarType.Float32 ? 1e-5 : 1e-2;

    private static float[] RandomRounded(int count, ScalarType t, Random random)
    {
        float[] values = Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        PrecisionConvert.RoundInPlace(t, values);
        return values;
    }

    private static DeviceBuffer<byte> Upload(CudaContext ctx, float[] values, ScalarType t)
    {
        byte[] bytes = t switch
        {
            ScalarType.Float32 => MemoryMarshal.AsBytes(values.AsSpan()).ToArray(),
            ScalarType.BFloat16 => MemoryMarshal.AsBytes(PrecisionConvert.ToBFloat16(values).AsSpan()).ToArray(),
            _ => MemoryMarshal.AsBytes(PrecisionConvert.ToHalf(values).AsSpan()).ToArray(),
        };
        return DeviceBuffer<byte>.FromHost(ctx, bytes);
    }

    private static float[] Download(DeviceBuffer<byte> buffer, ScalarType t)
    {
        byte[] bytes = buffer.ToArray();
        return t switch
        {
            ScalarType.Float32 => MemoryMarshal.Cast<byte, float>(bytes).ToArray(),
            ScalarType.BFloat16 => PrecisionConvert.ToSingle(MemoryMarshal.Cast<byte, BFloat16>(bytes)),
            _ => PrecisionConvert.ToSingle(MemoryMarshal.Cast<byte, Half>(bytes)),
        };
    }

    /// <summary>C[m,n] = Σ_k A[m,k]·W[n,k] in float64.</summary>
    private static double[] HostNT(float[] a, float[] w, int m, int n, int k, int aOffset = 0, int wOffset = 0)
    {
        var c = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++)
                    sum += (double)a[aOffset + i * k + p] * w[wOffset + j * k + p];
                c[i * n + j] = sum;
            }
        return c;
    }

    private static double RelativeNormError(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected)
    {
        double diff = 0, norm = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (float.IsNaN(actual[i]))
                return double.PositiveInfinity;
            diff += (actual[i] - expected[i]) * (actual[i] - expected[i]);
            norm += expected[i] * expected[i];
        }
        return Math.Sqrt(diff / Math.Max(norm, double.Epsilon));
    }

    [TestMethod]
    [DataRow(ScalarType.BFloat16, 64, 48, 80)]
    [DataRow(ScalarType.BFloat16, 33, 17, 129)]
    [DataRow(ScalarType.Float32, 33, 17, 129)]
    [DataRow(ScalarType.Float32, 128, 96, 64)]
    [DataRow(ScalarType.Float16, 40, 24, 72)]
    public void GemmEx_RowMajorNT_MatchesFloat64Host(ScalarType dtype, int m, int n, int k)
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using CublasHandle blas = GpuTest.NewCublas(stream);
        Assert.IsGreaterThanOrEqualTo(120000, blas.Version, "cuBLAS 12+");
        var random = new Random(m * 1000 + n * 10 + k);
        float[] a = RandomRounded(m * k, dtype, random);   // [M,K]
        float[] w = RandomRounded(n * k, dtype, random);   // [N,K]
        using DeviceBuffer<byte> aDev = Upload(ctx, a, dtype), wDev = Upload(ctx, w, dtype);
        using var cDev = new DeviceBuffer<byte>(ctx, (long)m * n * dtype.SizeOf()); // [M,N]
        cDev.FillBytes(0xFF);
        CudaDataType t = dtype.ToCudaDataType();

        blas.GemmEx(CublasOperation.Transpose, CublasOperation.None, n, m, k,
            1.0, wDev.DevicePointer, t, k, aDev.DevicePointer, t, k,
            0.0, cDev.DevicePointer, t, n, CublasComputeType.Compute32F);
        stream.Synchronize();

        double error = RelativeNormError(Download(cDev, dtype), HostNT(a, w, m, n, k));
        Assert.IsLessThan(Tolerance(dtype), error, $"{dtype} {m}x{n}x{k}: relative norm error {error:E3}");
    }

    [TestMethod]
    [DataRow(ScalarType.BFloat16)]
    [DataRow(ScalarType.Float32)]
    public void GemmStridedBatchedEx_EachBatchMatchesHost(ScalarType dtype)
    {
        const int batch = 3, m = 20, n = 36, k = 52;
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using CublasHandle blas = GpuTest.NewCublas(stream);
        var random = new Random(11);
        float[] a = RandomRounded(batch * m * k, dtype, random);   // [B,M,K]
        float[] w = RandomRounded(batch * n * k, dtype, random);   // [B,N,K]
        using DeviceBuffer<byte> aDev = Upload(ctx, a, dtype), wDev = Upload(ctx, w, dtype);
        using var cDev = new DeviceBuffer<byte>(ctx, (long)batch * m * n * dtype.SizeOf()); // [B,M,N]
        cDev.FillBytes(0xFF);
        CudaDataType t = dtype.ToCudaDataType();

        blas.GemmStridedBatchedEx(CublasOperation.Transpose, CublasOperation.None, n, m, k,
            1.0, wDev.DevicePointer, t, k, (long)n * k, aDev.DevicePointer, t, k, (long)m * k,
            0.0, cDev.DevicePointer, t, n, (long)m * n, batch, CublasComputeType.Compute32F);
        stream.Synchronize();

        float[] c = Download(cDev, dtype);
        for (int b = 0; b < batch; b++)
        {
            double[] expected = HostNT(a, w, m, n, k, b * m * k, b * n * k);
            double error = RelativeNormError(c.AsSpan(b * m * n, m * n), expected);
            Assert.IsLessThan(Tolerance(dtype), error, $"batch {b}: relative norm error {error:E3}");
        }
    }

    [TestMethod]
    [DataRow(ScalarType.BFloat16)]
    [DataRow(ScalarType.Float32)]
    public void GemmGroupedBatchedEx_TwoGroupsOfDifferentShapes_MatchHost(ScalarType dtype)
    {
        // group 0: two problems 33x40x24; group 1: one problem 7x16x48 (row-major M x N x K).
        int[] ms = [33, 7], ns = [40, 16], ks = [24, 48], sizes = [2, 1];
        CudaContext ctx = GpuTest.RequireContext();
        using var stream = new CudaStream(ctx);
        using CublasHandle blas = GpuTest.NewCublas(stream);
        var random = new Random(5);
        CudaDataType t = dtype.ToCudaDataType();

        var owned = new List<DeviceBuffer<byte>>();
        var problems = new List<(int Group, float[] A, float[] W, DeviceBuffer<byte> C)>();
        var aPtrs = new List<ulong>();
        var wPtrs = new List<ulong>();
        var cPtrs = new List<ulong>();
        try
        {
            for (int g = 0; g < 2; g++)
                for (int p = 0; p < sizes[g]; p++)
                {
                    float[] a = RandomRounded(ms[g] * ks[g], dtype, random), w = RandomRounded(ns[g] * ks[g], dtype, random);
                    DeviceBuffer<byte> aDev = Upload(ctx, a, dtype), wDev = Upload(ctx, w, dtype);
                    var cDev = new DeviceBuffer<byte>(ctx, (long)ms[g] * ns[g] * dtype.SizeOf());
                    cDev.FillBytes(0xFF);
                    owned.AddRange([aDev, wDev, cDev]);
                    problems.Add((g, a, w, cDev));
                    wPtrs.Add(wDev.DevicePointer); // cuBLAS "A" = W
                    aPtrs.Add(aDev.DevicePointer); // cuBLAS "B" = A
                    cPtrs.Add(cDev.DevicePointer);
                }
            using DeviceBuffer<ulong> wArray = DeviceBuffer<ulong>.FromHost(ctx, wPtrs.ToArray());
            using DeviceBuffer<ulong> aArray = DeviceBuffer<ulong>.FromHost(ctx, aPtrs.ToArray());
            using DeviceBuffer<ulong> cArray = DeviceBuffer<ulong>.FromHost(ctx, cPtrs.ToArray());

            blas.GemmGroupedBatchedEx(
                [CublasOperation.Transpose, CublasOperation.Transpose], [CublasOperation.None, CublasOperation.None],
                ns, ms, ks, [1f, 1f],
                wArray.DevicePointer, t, ks,
                aArray.DevicePointer, t, ks, [0f, 0f],
                cArray.DevicePointer, t, ns,
                sizes, CublasComputeType.Compute32F);
            stream.Synchronize();

            for (int i = 0; i < problems.Count; i++)
            {
                (int g, float[] a, float[] w, DeviceBuffer<byte> c) = problems[i];
                double error = RelativeNormError(Download(c, dtype), HostNT(a, w, ms[g], ns[g], ks[g]));
                Assert.IsLessThan(Tolerance(dtype), error, $"problem {i} (group {g}): relative norm error {error:E3}");
            }
        }
        finally
        {
            foreach (DeviceBuffer<byte> b in owned)
                b.Dispose();
        }
    }

    [TestMethod]
    public void GroupedSpansOfDifferentLengths_AreRejectedBeforeCublas()
    {
        CudaContext ctx = GpuTest.RequireContext();
        using var blas = new CublasHandle(ctx);
        Assert.ThrowsExactly<ArgumentException>(() => blas.GemmGroupedBatchedEx(
            [CublasOperation.None], [CublasOperation.None], [1, 1], [1], [1], [1f], 0, CudaDataType.Float32, [1],
            0, CudaDataType.Float32, [1], [0f], 0, CudaDataType.Float32, [1], [1], CublasComputeType.Compute32F));
    }
}
