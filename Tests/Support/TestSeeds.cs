using System.Globalization;

namespace MoeNative.Tests.Support;

/// <summary>
/// Seeds derived from a test case's parameters, the same in every process.
/// NOTE: never <see cref="HashCode.Combine{T1}(T1)"/> or <see cref="string.GetHashCode()"/> for a seed: .NET randomises
/// both per process, so every run drew other inputs (the cause of the flaky
/// HfReference_Vs_GroupedCublas(qwen3-30b-a3b, fp16, T=1): its failing input could never be drawn again).
/// </summary>
public static class TestSeeds
{
    /// <summary>FNV-1a (32-bit) of the parts' invariant text joined by '|', as a non-negative int.</summary>
    public static int Stable(params object[] parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        string text = string.Join('|', parts.Select(p => Convert.ToString(p, CultureInfo.InvariantCulture)));
        uint hash = 2166136261;
        foreach (char c in text)
        {
            hash ^= c;
            hash *= 16777619;
        }
        return (int)(hash & 0x7FFFFFFF);
    }
}
