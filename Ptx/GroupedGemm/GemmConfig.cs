namespace MoeNative.Ptx;

/// <summary>
/// Tile configuration of one grouped-GEMM specialisation; substituted into the PTX template at load time.
/// Tensor-core kernels (bf16/fp16): warp tile 64x32 (4 m16 x 4 n8 mma tiles, named accumulators), so
/// <c>Warps = (BlockM/64) * (BlockN/32)</c>; <c>BlockK = 32</c> (two k16 steps per shared-memory stage) or
/// <c>BlockK = 64</c> (four k16 steps behind one barrier: half the pipeline steps);
/// <c>Stages</c> = depth of the cp.async pipeline. The SIMT FFMA kernel (fp32, and the bf16/fp16 fallback for
/// shapes the tensor-core kernels cannot take) has one fixed shape, <see cref="Ffma64x64"/>: 64x64x16, 2 stages
/// (register prefetch), 8 warps; passing it with bf16/fp16 forces the SIMT kernel.
/// For <see cref="GroupedGemmLayout.BackwardWeightTN"/>, BlockM tiles N and BlockN tiles K of dW[e] and BlockK is the
/// chunk of the expert's rows reduced per stage.
/// </summary>
public sealed record GemmConfig(int BlockM, int BlockN, int BlockK, int Stages, int Warps)
{
    /// <summary>The only SIMT FFMA configuration.</summary>
    public static GemmConfig Ffma64x64 { get; } = new(64, 64, 16, 2, 8);

    /// <summary>Rows of the tensor-core warp tile.</summary>
    public const int MmaWarpTileM = 64;

    /// <summary>Columns of the tensor-core warp tile.</summary>
    public const int MmaWarpTileN = 32;

    /// <summary>Reduction depth of one tensor-core pipeline stage (every layout).</summary>
    public const int MmaBlockK = 32;

    /// <summary>The deeper stage (every layout's tensor-core kernel).</summary>
    public const int MmaBlockKWide = 64;

    /// <summary>Threads per CTA.</summary>
    public int Threads => Warps * 32;

    /// <summary>Short name used in module and entry names: <c>128x128x32_s4_w8</c>.</summary>
    public string Name => $"{BlockM}x{BlockN}x{BlockK}_s{Stages}_w{Warps}";

    public override string ToString() => Name;

    /// <summary>Why this configuration cannot be specialised for <paramref name="math"/>, or null when it can.</summary>
    public string? Problem(GemmMath math)
    {
        switch (math)
        {
            case GemmMath.Ffma:
                return this == Ffma64x64 ? null : $"the fp32 FFMA kernel has the single configuration {Ffma64x64.Name}; got {Name}.";
            case GemmMath.MmaSm80:
                if (BlockM is not (64 or 128)) return $"BlockM must be 64 or 128 (warp tile {MmaWarpTileM} rows); got {BlockM}.";
                if (BlockN is not (32 or 64 or 128)) return $"BlockN must be 32, 64 or 128 (warp tile {MmaWarpTileN} columns); got {BlockN}.";
                if (BlockK is not (MmaBlockK or MmaBlockKWide))
                    return $"BlockK must be {MmaBlockK} or {MmaBlockKWide} for the tensor-core kernels; got {BlockK}.";
                int warps = BlockM / MmaWarpTileM * (BlockN / MmaWarpTileN);
                if (Warps != warps) return $"Warps must be (BlockM/64)*(BlockN/32) = {warps} for {BlockM}x{BlockN}; got {Warps}.";
                if (Stages is < 2 or > 8) return $"Stages must be in 2..8; got {Stages}.";
                return null;
            default:
                return $"unknown math {math}.";
        }
    }

    /// <summary>Tensor-core configuration with the warp count implied by the tile.</summary>
    public static GemmConfig Mma(int blockM, int blockN, int stages, int blockK = MmaBlockK) =>
        new(blockM, blockN, blockK, stages, blockM / MmaWarpTileM * (blockN / MmaWarpTileN));

    /// <summary>Why this configuration cannot run <paramref name="layout"/> with <paramref name="math"/>, or null when it can
    /// (every layout's tensor-core kernel takes BlockK = 32 and 64).</summary>
    public string? Problem(GemmMath math, GroupedGemmLayout layout) =>
        Enum.IsDefined(layout) ? Problem(math) : $"Unknown grouped-GEMM layout {layout}.";
}
