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
/// <para><paramref name="Family"/> <see cref="GemmMath.WgmmaSm90a"/> marks a Hopper tile (<see cref="Wgmma"/>): 128 rows
/// (two consumer warpgroups of m64), BlockN 128 or 256, BlockK 64 (one 128-byte swizzle atom), 12 warps (one producer
/// warpgroup), Stages = depth of the mbarrier ring; its name starts with <c>sm90a_</c>. <paramref name="Cluster"/> 2
/// (row-tiled Hopper tiles only, name suffix <c>_c2</c>) launches clusters of 2 CTAs that compute two m-tiles of the
/// same (expert, n-tile), each loading half of the W stage and multicasting it to both (half the W bytes out of L2).
/// <paramref name="StagedEpilogue"/> (row-tiled Hopper tiles only, name suffix <c>_stg</c>): the plain and SwiGLU
/// epilogues write the tile into shared staging and leave it through per-row bulk async copies that overlap the next
/// tile. The staging is the ring slots of the tile's last two k-tiles (held past the tile, released by the next one), so
/// it costs no shared memory of its own and needs K &gt; 64 (<see cref="ShapeProblem"/>); no clusters.</para>
/// </summary>
public sealed record GemmConfig(int BlockM, int BlockN, int BlockK, int Stages, int Warps, GemmMath Family = GemmMath.MmaSm80,
    int Cluster = 1, bool StagedEpilogue = false)
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

    /// <summary>Short name used in module and entry names: <c>128x128x32_s4_w8</c> (Hopper: <c>sm90a_128x128x64_s4_w12</c>,
    /// <c>_c2</c> in clusters of 2, <c>_stg</c> with the staged epilogue).</summary>
    public string Name => (Family == GemmMath.WgmmaSm90a ? "sm90a_" : "") + $"{BlockM}x{BlockN}x{BlockK}_s{Stages}_w{Warps}"
        + (Cluster == 1 ? "" : $"_c{Cluster}") + (StagedEpilogue ? "_stg" : "");

    /// <summary>Rows of the Hopper tile (two consumer warpgroups x m64).</summary>
    public const int WgmmaBlockM = 128;

    /// <summary>Reduction depth of one Hopper stage: 64 bf16/fp16 = one 128-byte swizzle atom per row.</summary>
    public const int WgmmaBlockK = 64;

    /// <summary>Dynamic shared memory a Hopper tile may use before the per-expert table: the 227 KiB opt-in limit less
    /// 4 KiB for 1024 experts' m_sizes.</summary>
    private const int WgmmaSharedLimit = 227 * 1024 - 4 * 1024;

    /// <summary>Warps of a Hopper CTA: one producer and two consumer warpgroups.</summary>
    public const int WgmmaWarps = 12;

    /// <summary>Hopper (sm_90a) tile: 128 x <paramref name="blockN"/> x 64, <paramref name="stages"/> ring stages, in
    /// clusters of <paramref name="cluster"/> CTAs (1, or 2: the W stage multicast to both), the epilogue from
    /// registers or (<paramref name="staged"/>) through shared staging and bulk async copies.</summary>
    public static GemmConfig Wgmma(int blockN, int stages, int cluster = 1, bool staged = false) =>
        new(WgmmaBlockM, blockN, WgmmaBlockK, stages, WgmmaWarps, GemmMath.WgmmaSm90a, cluster, staged);

    /// <summary>Dynamic shared memory of a Hopper row-tiled (NT, NN) tile before the per-expert table: 1024 B of
    /// alignment slack, the A and W stages, the epilogue staging (<see cref="StagedEpilogue"/>), 2 mbarriers per stage
    /// and the 128-row table (the PTX header lists the same layout).</summary>
    public int WgmmaSharedBytes => WgmmaSharedBytesOf(GroupedGemmLayout.ForwardNT);

    /// <summary>Bytes of a Hopper kernel's row table: 128 s64 row offsets (NT, NN: one per tile row); the TN kernel
    /// keeps 64 A and 64 B row offsets per stage, double-buffered (2 x 128 s64).</summary>
    public static int WgmmaRowTableBytes(GroupedGemmLayout layout) => (layout == GroupedGemmLayout.BackwardWeightTN ? 2 : 1) * 8 * WgmmaBlockM;

    /// <summary>Dynamic shared memory of the Hopper kernel of <paramref name="layout"/> before the per-expert table:
    /// 1024 B of alignment slack, the A and B stages, the epilogue staging (TN, f32 elements when
    /// <paramref name="float32Output"/>; row-tiled with <see cref="StagedEpilogue"/>), 2 mbarriers per stage and the row table.</summary>
    public int WgmmaSharedBytesOf(GroupedGemmLayout layout, bool float32Output = false) =>
        1024 + Stages * (WgmmaBlockM * 128 + BlockN * 128) + WgmmaStagingBytes(layout, float32Output) + 16 * Stages + WgmmaRowTableBytes(layout);

    /// <summary>Row pitch of the epilogue staging tile of the staged row tiles: BlockN columns x 2 B + 16 B (the 4-byte
    /// fragment stores of a warp, 8 rows x 4 threads, hit 32 distinct banks; rows stay 16-byte aligned for the bulk copies).</summary>
    public int WgmmaStagingPitch => 2 * BlockN + 16;

    /// <summary>The epilogue staging area of the TN kernel (dtype, or f32 when <paramref name="float32Output"/>): one
    /// whole [64 rows][BlockN columns] tile per consumer warpgroup, unpadded: boxes of [64 rows][128 B] in the 128-byte
    /// swizzle its TMA stores read, copied out while the next tile runs. The row tiles have none: a
    /// <see cref="StagedEpilogue"/> row tile stages in its ring (rows padded to <see cref="WgmmaStagingPitch"/>: their
    /// per-row copies go to scattered rows), the others store from registers.</summary>
    public int WgmmaStagingBytes(GroupedGemmLayout layout, bool float32Output = false) =>
        layout == GroupedGemmLayout.BackwardWeightTN ? 2 * 64 * BlockN * (float32Output ? 4 : 2) : 0;

    /// <summary>Why this configuration cannot run a call of (<paramref name="n"/>, <paramref name="k"/>) on
    /// <paramref name="layout"/> (the GroupedGemm entry points' N and K: the reduction is K, or N for BackwardDataNN), or
    /// null when it can: a staged row tile stages in the ring slots of the tile's last two k-tiles, so its reduction
    /// must be longer than one 64-deep k-tile.</summary>
    public string? ShapeProblem(GroupedGemmLayout layout, int n, int k)
    {
        if (!StagedEpilogue || layout == GroupedGemmLayout.BackwardWeightTN) return null;
        (string name, int depth) = layout == GroupedGemmLayout.BackwardDataNN ? ("N", n) : ("K", k);
        return depth > WgmmaBlockK ? null
            : $"{Name} stages its epilogue in the ring slots of the tile's last two k-tiles: the reduction {name} must be > {WgmmaBlockK}; got {name} = {depth}.";
    }

    /// <summary>dW rows per TMA store of the TN kernel's epilogue: the 16 rows one consumer warp holds.</summary>
    public const int WgmmaStoreRows = 16;

    /// <summary>Bytes of columns per TMA store box of the TN kernel's epilogue: one 128-byte swizzle span (the staging
    /// is BN / (WgmmaStoreBoxBytes / element bytes) boxes of [64 rows][WgmmaStoreBoxBytes]).</summary>
    public const int WgmmaStoreBoxBytes = 128;

    public override string ToString() => Name;

    /// <summary>Why this configuration cannot be specialised for <paramref name="math"/>, or null when it can.</summary>
    public string? Problem(GemmMath math)
    {
        switch (math)
        {
            case GemmMath.Ffma:
                return this == Ffma64x64 ? null : $"the fp32 FFMA kernel has the single configuration {Ffma64x64.Name}; got {Name}.";
            case GemmMath.MmaSm80:
                if (Cluster != 1) return $"only the sm_90a tiles run in clusters; got Cluster = {Cluster}.";
                if (StagedEpilogue) return "only the sm_90a row tiles have the staged epilogue; got StagedEpilogue = true.";
                if (BlockM is not (64 or 128)) return $"BlockM must be 64 or 128 (warp tile {MmaWarpTileM} rows); got {BlockM}.";
                if (BlockN is not (32 or 64 or 128)) return $"BlockN must be 32, 64 or 128 (warp tile {MmaWarpTileN} columns); got {BlockN}.";
                if (BlockK is not (MmaBlockK or MmaBlockKWide))
                    return $"BlockK must be {MmaBlockK} or {MmaBlockKWide} for the tensor-core kernels; got {BlockK}.";
                int warps = BlockM / MmaWarpTileM * (BlockN / MmaWarpTileN);
                if (Warps != warps) return $"Warps must be (BlockM/64)*(BlockN/32) = {warps} for {BlockM}x{BlockN}; got {Warps}.";
                if (Stages is < 2 or > 8) return $"Stages must be in 2..8; got {Stages}.";
                return null;
            case GemmMath.WgmmaSm90a:
                if (BlockM != WgmmaBlockM) return $"BlockM must be {WgmmaBlockM} (two consumer warpgroups of m64); got {BlockM}.";
                if (BlockN is not (64 or 128 or 256)) return $"BlockN must be 64, 128 or 256 (one wgmma m64nBlockN per k16 step); got {BlockN}.";
                if (BlockK != WgmmaBlockK) return $"BlockK must be {WgmmaBlockK} (one 128-byte swizzle atom per row); got {BlockK}.";
                if (Warps != WgmmaWarps) return $"Warps must be {WgmmaWarps} (one producer and two consumer warpgroups); got {Warps}.";
                if (Stages is < 3 or > 8) return $"Stages must be in 3..8; got {Stages}.";
                if (Cluster is not (1 or 2)) return $"Cluster must be 1 or 2 CTAs; got {Cluster}.";
                if (Cluster != 1 && StagedEpilogue)
                    return "the staged epilogue stages in the CTA's own ring slots, which a cluster's multicast fills in both CTAs: pass Cluster = 1 or StagedEpilogue = false.";
                if (WgmmaSharedBytes > WgmmaSharedLimit)
                    return $"{Stages} stages of 128x{BlockN}x64 need {WgmmaSharedBytes} bytes of shared memory; at most {WgmmaSharedLimit} leave room for 1024 experts.";
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
    public string? Problem(GemmMath math, GroupedGemmLayout layout)
    {
        if (!Enum.IsDefined(layout)) return $"Unknown grouped-GEMM layout {layout}.";
        if (Problem(math) is { } problem) return problem;
        if (Cluster != 1 && layout == GroupedGemmLayout.BackwardWeightTN)
            return $"the TN kernel runs without clusters (each dW tile reduces its own rows); got Cluster = {Cluster}.";
        if (math == GemmMath.WgmmaSm90a && BlockN < 128 && layout == GroupedGemmLayout.BackwardWeightTN)
            return $"the sm_90a TN kernel's tiles are 128 or 256 columns wide (its stages load B in 128-column halves); got BlockN = {BlockN}.";
        if (StagedEpilogue && layout == GroupedGemmLayout.BackwardWeightTN)
            return "the TN kernel always stages its epilogue; StagedEpilogue selects the row tiles' staged variant (pass false).";
        if (math == GemmMath.WgmmaSm90a && WgmmaSharedBytesOf(layout) > WgmmaSharedLimit)
            return $"{Stages} stages of 128x{BlockN}x64 need {WgmmaSharedBytesOf(layout)} bytes of shared memory for {layout}; at most {WgmmaSharedLimit} leave room for 1024 experts.";
        return null;
    }

    /// <summary>Why this configuration cannot run the TN GEMM with an f32 output (dW stored unrounded), or null when it
    /// can: the sm_80 and sm_90a tensor-core kernels have that epilogue (the SIMT kernel does not); an sm_90a tile needs
    /// its f32 staging (2 x 64 rows x 4 BN B) to fit beside the stages.</summary>
    public string? Float32OutputProblem(GemmMath math)
    {
        if (Problem(math, GroupedGemmLayout.BackwardWeightTN) is { } problem) return problem;
        if (math == GemmMath.Ffma) return $"the SIMT FFMA kernel has no f32-output epilogue (a tensor-core tile is needed); got {Name}.";
        if (math == GemmMath.WgmmaSm90a && WgmmaSharedBytesOf(GroupedGemmLayout.BackwardWeightTN, float32Output: true) > WgmmaSharedLimit)
            return $"{Stages} stages of 128x{BlockN}x64 with the f32 staging need {WgmmaSharedBytesOf(GroupedGemmLayout.BackwardWeightTN, float32Output: true)} bytes of shared memory; at most {WgmmaSharedLimit} leave room for 1024 experts.";
        return null;
    }
}
