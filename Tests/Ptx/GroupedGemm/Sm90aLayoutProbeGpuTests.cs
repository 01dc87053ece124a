using System.Globalization;
using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>
/// One warpgroup, one wgmma tile (wgmma_layout_probe_sm90a.ptx): the 128-byte-swizzled shared image, the wgmma
/// descriptors (K-major A and B; N-major B through trans-b; MN-major A through trans-a with N-major B, the operands of
/// the weight-gradient TN kernel) and the m64n128 accumulator fragment against the float64
/// host product of fresh random bf16/fp16 inputs, before any full kernel. A wrong swizzle, descriptor field or
/// fragment map moves or mixes elements and fails here with the (m, n) and the thread that held it.
/// Needs compute capability 9.0 (Inconclusive elsewhere). Filter: FullyQualifiedName~Sm90a.
/// </summary>
[TestClass]
public sealed class Sm90aLayoutProbeGpuTests
{
    private const int M = 64, N = GroupedGemmSm90aSpecs.ProbeColumns, K = 64;

    [TestMethod]
    [TestCategory(GpuTest.Category)]
    [DataRow(ScalarType.BFloat16, 0)]
    [DataRow(ScalarType.BFloat16, 1)]
    [DataRow(ScalarType.BFloat16, 2)]
    [DataRow(ScalarType.Float16, 0)]
    [DataRow(ScalarType.Float16, 1)]
    [DataRow(ScalarType.Float16, 2)]
    public void WgmmaTile_MatchesFloat64(ScalarType dtype, int mode)
    {
        CudaContext ctx = Sm90aGroupedGemmGpuTests.RequireHopper();
        bool bNMajor = mode != 0, aMMajor = mode == 2;
        int seed = 17 + mode + (dtype == ScalarType.Float16 ? 3 : 0);
        var rng = new Random(seed);
        float[] a = HostData.Random(dtype, M * K, rng);          // K-major [m][k] or MN-major [k][m]
        float[] b = HostData.Random(dtype, N * K, rng);          // K-major [n][k] or N-major [k][n]
        var expected = new double[M * N];
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++)
            {
                double s = 0;
                for (int k = 0; k < K; k++)
                    s += (double)(aMMajor ? a[k * M + m] : a[m * K + k]) * (bNMajor ? b[k * N + n] : b[n * K + k]);
                expected[m * N + n] = s;
            }

        using var stream = new CudaStream(ctx);
        using DeviceBuffer<byte> da = HostData.Upload(ctx, dtype, a);
        using DeviceBuffer<byte> db = HostData.Upload(ctx, dtype, b);
        using var dd = new DeviceBuffer<float>(ctx, M * N);
        dd.FillBytes(0xFF, stream); // NaN: an element no thread writes fails
        PtxKernel<WgmmaLayoutProbeArgs> kernel = PtxModuleCache.GetKernel<WgmmaLayoutProbeArgs>(ctx,
            GroupedGemmSm90aSpecs.ProbeModule(dtype), GroupedGemmSm90aSpecs.ProbeEntry(dtype));
        var args = new WgmmaLayoutProbeArgs { A = da.DevicePointer, B = db.DevicePointer, D = dd.DevicePointer, Mode = mode };
        kernel.Launch(stream, new Dim3(1), new Dim3(128), 0, in args);
        stream.Synchronize();
        float[] actual = dd.ToArray();

        int bad = 0;
        string first = "";
        for (int i = 0; i < M * N; i++)
        {
            double e = expected[i], x = actual[i];
            if (Math.Abs(x - e) <= 1e-4 * (1 + Math.Abs(e))) continue;
            if (bad++ == 0)
            {
                int m = i / N, n = i % N;
                int thread = 32 * (m / 16) + 4 * (m % 8) + n % 8 / 2; // the fragment map under test
                first = string.Create(CultureInfo.InvariantCulture,
                    $"first at D[{m}][{n}] (thread {thread}, acc{4 * (n / 8) + (m % 16 >= 8 ? 2 : 0) + n % 2}): actual {x:G7}, expected {e:G7}");
            }
        }
        Assert.AreEqual(0, bad, $"{dtype.ShortName()} A {(aMMajor ? "MN-major" : "K-major")}, B {(bNMajor ? "N-major" : "K-major")}, seed {seed}: {bad} of {M * N} elements differ; {first}");
    }
}
