using MoeNative.Reference;
using MoeNative.Tests.Support;
using MoeNative.Interop;

namespace MoeNative.Tests.Reference;

/// <summary>
/// The rounding points of each forward, checked against a bf16 computation written out here step by step
/// (HF: every op returns a bf16 tensor; grouped: silu-and-mul and the top-k sum rounded once). Routing is given,
/// so only the expert path is under test.
/// </summary>
[TestClass]
public sealed class RoundingPointTests
{
    private static float Bf(double v) => (float)(BFloat16)(float)v;

    [TestMethod]
    [DataRow("hf")]
    [DataRow("grouped")]
    public void ExpertPathRoundsWhereTheImplementationDoes(string impl)
    {
        var c = new MoeConfig(HiddenSize: 4, IntermediateSize: 3, NumExperts: 3, TopK: 2);
        const int T = 5;
        MoeWeights w = MoeWeights.Random(c, 21, ScalarType.BFloat16);
        float[] x = TensorRandom.Normal(T * 4, 22, 1f, ScalarType.BFloat16);
        MoeRouting routing = ReferenceTestData.RandomRouting(T, c, 23, ScalarType.BFloat16);
        MoeIntermediates f = MoeReference.Create(impl, w, ScalarType.BFloat16).Forward(x, routing);

        bool hf = impl == "hf";
        var y = new float[T * 4];
        var acc = new double[T * 4];
        var slotOut = new float[T, 2, 4]; // the expert output of each slot (before the routing weight)
        for (int t = 0; t < T; t++)
            for (int j = 0; j < 2; j++)
            {
                int e = routing.Selected[t * 2 + j];
                var a = new float[3];
                for (int i = 0; i < 3; i++)
                {
                    double g = 0, u = 0;
                    for (int h = 0; h < 4; h++)
                    {
                        g += (double)x[t * 4 + h] * w.GateProjOf(e)[i * 4 + h];
                        u += (double)x[t * 4 + h] * w.UpProjOf(e)[i * 4 + h];
                    }
                    float gb = Bf(g), ub = Bf(u);
                    double silu = gb / (1 + Math.Exp(-gb));
                    a[i] = hf ? Bf(Bf(silu) * ub) : Bf(silu * ub);
                }
                for (int h = 0; h < 4; h++)
                {
                    double d = 0;
                    for (int i = 0; i < 3; i++) d += (double)a[i] * w.DownProjOf(e)[h * 3 + i];
                    slotOut[t, j, h] = Bf(d);
                }
            }
        for (int t = 0; t < T; t++)
            for (int h = 0; h < 4; h++)
            {
                if (hf)
                {
                    // index_add_ in increasing expert id, each step rounded; the addend rounded after the weight product.
                    float yy = 0;
                    foreach (int j in new[] { 0, 1 }.OrderBy(j => routing.Selected[t * 2 + j]))
                        yy = Bf(yy + Bf(slotOut[t, j, h] * (double)routing.Weights[t * 2 + j]));
                    y[t * 4 + h] = yy;
                }
                else
                {
                    acc[t * 4 + h] = slotOut[t, 0, h] * (double)routing.Weights[t * 2] + slotOut[t, 1, h] * (double)routing.Weights[t * 2 + 1];
                    y[t * 4 + h] = Bf(acc[t * 4 + h]);
                }
            }
        CollectionAssert.AreEqual(y, f.Output, $"{impl} output, bit for bit");
    }
}
