namespace MoeNative.Ptx;

/// <summary>
/// Where an operand row of expert-ordered row <c>r</c> is read from (the grouped GEMMs' <c>a(r)</c> / <c>b(r)</c>).
/// Values are the kernels' <c>*_mode</c> parameters.
/// </summary>
public enum RowSource
{
    /// <summary><c>r</c>: the operand is already in expert order ([T*k, *]).</summary>
    Identity = 0,
    /// <summary><c>gather[r]</c>: the operand is in token-slot order ([T*k, *], slot p = t*k + j), e.g. dY with permute_y.</summary>
    Gather = 1,
    /// <summary><c>gather[r] / k</c>: the operand is per token ([T, *]), e.g. X with permute_x.</summary>
    GatherToken = 2,
}

/// <summary>Where output row <c>r</c> is written (<c>c(r)</c>). Values are the kernels' <c>c_mode</c> parameter.</summary>
public enum RowTarget
{
    /// <summary><c>r</c>: expert order.</summary>
    Identity = 0,
    /// <summary><c>gather[r]</c>: token-slot order (permute_y store / permute_x dX store).</summary>
    Scatter = 1,
}

/// <summary>
/// The row grouping every grouped GEMM walks on the device: expert <c>e</c> owns expert-ordered rows
/// <c>[off[e], off[e] + m_sizes[e])</c>, <c>off</c> = exclusive prefix sum of <c>m_sizes</c>, read by the kernels
/// from device memory (no host synchronisation).
/// </summary>
/// <param name="MSizes">Device pointer, i32 [E]: rows per expert; must sum to <paramref name="TotalRows"/>.</param>
/// <param name="Gather">Device pointer, i32 [T*k]: token slot p = t*k + j held by row r; 0 when no side gathers or scatters.</param>
/// <param name="TotalRows">T*k, the number of expert-ordered rows (used for grid sizing and the empty case only).</param>
/// <param name="Experts">E.</param>
/// <param name="TopK">k (divisor for <see cref="RowSource.GatherToken"/>).</param>
public readonly record struct GroupedRows(ulong MSizes, ulong Gather, int TotalRows, int Experts, int TopK);

/// <summary>The three grouped-GEMM layouts; the names say which operand is K-major ("N" = not transposed).</summary>
public enum GroupedGemmLayout
{
    /// <summary>Forward: C[c(r), n] = scale(r) · Σ_k A[a(r), k] · W[e, n, k] (both operands K-contiguous).</summary>
    ForwardNT,
    /// <summary>Backward data: C[c(r), k] = Σ_n A[a(r), n] · W[e, n, k] (W read N-major).</summary>
    BackwardDataNN,
    /// <summary>Backward weight: dW[e, n, k] = Σ_{r∈e} A[a(r), n] · B[b(r), k] (reduction over the expert's rows).</summary>
    BackwardWeightTN,
}

/// <summary>Which instruction family a specialisation computes with.</summary>
public enum GemmMath
{
    /// <summary>SIMT FFMA kernel (64x64x16 tile, 256 threads, element-wise global access): fp32 storage, and the
    /// bf16/fp16 fallback when N or K is not a multiple of 8 or an operand is not 16-byte aligned.</summary>
    Ffma,
    /// <summary>bf16/fp16 storage: <c>mma.sync.m16n8k16</c> tensor cores, <c>ldmatrix</c>, <c>cp.async</c> pipeline (sm_80+).</summary>
    MmaSm80,
    /// <summary>bf16/fp16 storage on Hopper (sm_90a): warpgroup <c>wgmma.mma_async</c>, W through TMA, an mbarrier
    /// ring, producer/consumer warpgroups (Ptx/GroupedGemm/Sm90a).</summary>
    WgmmaSm90a,
}
