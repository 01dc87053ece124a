using MoeNative.Reference;
using MoeNative.Interop;

namespace MoeNative.Tests.Reference;

/// <summary>Shared builders for the reference tests.</summary>
internal static class ReferenceTestData
{
    public static MoeForwardKind Kind(string impl) => impl switch
    {
        "hf" => MoeForwardKind.HfLoop,
        "grouped" => MoeForwardKind.Grouped,
        _ => throw new ArgumentException($"Unknown implementation '{impl}'.", nameof(impl)),
    };

    public static double[] ToDouble(float[] values) => Array.ConvertAll(values, v => (double)v);

    /// <summary>Routing modes the data rows name: "topk" (computed), "one-expert" (every token uses expert 0; with k=1
    /// every other expert is empty), "first-experts" (every token uses experts 0..k-1: the other experts get no token).</summary>
    public static int[]? Selection(string mode, int tokens, MoeConfig c)
    {
        int k = c.TopK, e = c.NumExperts;
        switch (mode)
        {
            case "topk":
                return null;
            case "one-expert":
                {
                    var sel = new int[tokens * k];
                    for (int t = 0; t < tokens; t++)
                        for (int j = 0; j < k; j++)
                            sel[t * k + j] = j == 0 ? 0 : 1 + (t + j) % (e - 1);
                    return sel;
                }
            case "first-experts":
                {
                    var sel = new int[tokens * k];
                    for (int t = 0; t < tokens; t++)
                        for (int j = 0; j < k; j++)
                            sel[t * k + j] = (j + t) % k;
                    return sel;
                }
            default:
                throw new ArgumentException($"Unknown routing mode '{mode}'.", nameof(mode));
        }
    }

    /// <summary>Hidden states X [T,H], N(0, 1) rounded to <paramref name="dtype"/>.</summary>
    public static float[] Input(int tokens, MoeConfig c, int seed, ScalarType dtype) =>
        TensorRandom.Normal((long)tokens * c.HiddenSize, seed, 1f, dtype);

    /// <summary>N(0, std²) double values that are not all float-representable (float64 checks).</summary>
    public static double[] RandomNormalDouble(int count, int seed, double std = 1.0)
    {
        float[] f = TensorRandom.Normal(count, seed, 1f);
        // Add a second stream's low-order part so values are not float-representable only.
        float[] g = TensorRandom.Normal(count, unchecked(seed + 7919), 1f);
        var d = new double[count];
        for (int i = 0; i < count; i++) d[i] = (f[i] + 1e-7 * g[i]) * std;
        return d;
    }

    /// <summary>A random routing: sel [T,k] k distinct experts per token (uniform), w [T,k] positive weights in
    /// [0.1, 1.1) rounded to <paramref name="dtype"/>.</summary>
    public static MoeRouting RandomRouting(int tokens, MoeConfig config, int seed, ScalarType dtype = ScalarType.Float32)
    {
        int k = config.TopK, e = config.NumExperts;
        var selected = new int[tokens * k];
        var weights = new float[tokens * k];
        int[] draws = TensorRandom.Integers(tokens * e, int.MaxValue, seed, stream: 1);
        var order = new int[e];
        var keys = new int[e];
        for (int t = 0; t < tokens; t++)
        {
            for (int i = 0; i < e; i++) { order[i] = i; keys[i] = draws[t * e + i]; }
            Array.Sort(keys, order);
            for (int j = 0; j < k; j++)
            {
                selected[t * k + j] = order[j];
                weights[t * k + j] = StoragePrecision.Round(0.1f + (keys[j] % 1000) / 1000f, dtype);
            }
        }
        return new MoeRouting(tokens, k, selected, weights);
    }
}
