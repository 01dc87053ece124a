namespace MoeNative.Ptx;

/// <summary>
/// Which 8-column blocks of a consumer's m64nBN accumulator an epilogue piece covers. The last k-tile of a tile runs
/// as two wgmma groups (consumer_k_loop.ptx): the lower half (blocks 0 .. BN/16-1, registers acc0 ..) leaves while
/// the upper half's wgmmas still run, and the upper half (blocks BN/16 .., registers acc(BN/4) ..) leaves under the
/// next tile's first lower-half wgmmas.
/// </summary>
internal enum AccumulatorHalf
{
    /// <summary>Every block.</summary>
    Whole,

    /// <summary>Blocks 0 .. BN/16 - 1 (columns 0 .. BN/2 - 1).</summary>
    Lower,

    /// <summary>Blocks BN/16 .. BN/8 - 1 (columns BN/2 .. BN - 1).</summary>
    Upper,
}

internal static class AccumulatorHalfExtensions
{
    /// <summary>The 8-column block indices j of <paramref name="half"/> in an accumulator of <paramref name="columns"/> columns.</summary>
    public static IEnumerable<int> Blocks(this AccumulatorHalf half, int columns) => half switch
    {
        AccumulatorHalf.Whole => Enumerable.Range(0, columns / 8),
        AccumulatorHalf.Lower => Enumerable.Range(0, columns / 16),
        AccumulatorHalf.Upper => Enumerable.Range(columns / 16, columns / 16),
        _ => throw new ArgumentOutOfRangeException(nameof(half), half, "Expected Whole, Lower or Upper."),
    };

    /// <summary>"" | "_LO" | "_HI": the label suffix of an epilogue piece (its labels stay unique in the kernel).</summary>
    public static string LabelSuffix(this AccumulatorHalf half) => half switch
    {
        AccumulatorHalf.Whole => "",
        AccumulatorHalf.Lower => "_LO",
        AccumulatorHalf.Upper => "_HI",
        _ => throw new ArgumentOutOfRangeException(nameof(half), half, "Expected Whole, Lower or Upper."),
    };
}
