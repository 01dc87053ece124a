namespace MoeNative.Reference;

/// <summary>
/// The largest token count T each implementation accepts for a layer shape, stated and checked before anything is
/// allocated. Dimension legend: T tokens, H hidden, I intermediate, E experts, k experts per token; TK = T·k rows.
/// Every product is taken in 64 bits with overflow checks, so a huge T or shape fails with a message, never wraps.
/// </summary>
public static class MoeLimits
{
    /// <summary>
    /// Device blocks: T·k rows are int32 in every kernel (row and slot indices; byte offsets are 64-bit), and the
    /// workspace shape class (the next power of two of T) must be an int: T ≤ min(2^30, (2^31 − 1) / k).
    /// </summary>
    public static int MaxDeviceTokens(MoeConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return (int)Math.Min(1L << 30, int.MaxValue / Math.Max(1, config.TopK));
    }

    /// <summary>
    /// Host reference: every [T·k, ·] and [T, ·] tensor is one .NET array (at most <see cref="Array.MaxLength"/>
    /// elements), the widest being [T·k, max(2I, H)] or [T, E]; and T·k fits an int32.
    /// </summary>
    public static int MaxReferenceTokens(MoeConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        long perToken = Math.Max((long)config.TopK * Math.Max(2L * config.IntermediateSize, config.HiddenSize),
            Math.Max(config.NumExperts, config.HiddenSize));
        return (int)Math.Min(Array.MaxLength / Math.Max(1, perToken), int.MaxValue / Math.Max(1, config.TopK));
    }

    /// <summary>Throws unless 0 ≤ <paramref name="tokens"/> ≤ <see cref="MaxDeviceTokens"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Names <paramref name="paramName"/>, the limit and why.</exception>
    public static void CheckDeviceTokens(MoeConfig config, long tokens, string paramName)
    {
        int max = MaxDeviceTokens(config);
        if (tokens >= 0 && tokens <= max) return; // NOTE: the message below is built only on failure (no allocation per call)
        Check(tokens, max, paramName, $"a device block of {config} takes at most T = {max} tokens (T*k rows are int32 in the kernels)");
    }

    /// <summary>Throws unless 0 ≤ <paramref name="tokens"/> ≤ <see cref="MaxReferenceTokens"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Names <paramref name="paramName"/>, the limit and why.</exception>
    public static void CheckReferenceTokens(MoeConfig config, long tokens, string paramName) =>
        Check(tokens, MaxReferenceTokens(config), paramName,
            $"the host reference of {config} takes at most T = {MaxReferenceTokens(config)} tokens "
            + $"([T*k,max(2I,H)] must fit one .NET array of {Array.MaxLength} elements)");

    /// <summary>Π <paramref name="dims"/> in 64 bits; null when a dimension is negative or the product overflows.</summary>
    public static long? CheckedProduct(ReadOnlySpan<long> dims)
    {
        foreach (long d in dims)
            if (d < 0) return null;
        if (dims.Contains(0L)) return 0;
        long n = 1;
        foreach (long d in dims)
        {
            if (n > long.MaxValue / d) return null;
            n *= d;
        }
        return n;
    }

    private static void Check(long tokens, int max, string paramName, string why)
    {
        if (tokens < 0)
            throw new ArgumentOutOfRangeException(paramName, tokens, "The token count T must be zero or positive.");
        if (tokens > max)
            throw new ArgumentOutOfRangeException(paramName, tokens, $"T = {tokens} is too large: {why}.");
    }
}
