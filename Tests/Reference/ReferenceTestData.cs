using MoeNative.Reference;
using MoeNative.Tests.Support;

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

    public static float[] Input(int tokens, MoeConfig c, int seed, ScalarType dtype) =>
        Numerics.RandomNormal((long)tokens * c.HiddenSize, seed, 1f, dtype);
}
