using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Blocks;

/// <summary>
/// One grouped-GEMM launch of the fused block with everything but its tile config: what the tuner times and the
/// block then launches with the chosen config (a value, so a steady-state call allocates nothing). Operands as in
/// <see cref="GroupedGemm"/>: NT/NN <c>B</c> = W [E,N,K], TN <c>B</c> = the second row operand. <c>Float32Output</c>
/// (TN only): C is f32, stored unrounded (<see cref="GroupedGemm.BackwardWeightTNFloat32"/>).
/// </summary>
internal readonly record struct FusedGemmCall(FusedGemm Gemm, DeviceRange A, DeviceRange B, DeviceRange C, GroupedRows Rows,
    int N, int K, RowSource ARows, RowTarget CRows, RowSource BRows, DeviceRange RowScale, bool Float32Output = false)
{
    public GroupedGemmLayout Layout => GemmTuner.LayoutOf(Gemm);

    /// <summary>Forward NT: C [R,N] = scale · A [R,K] · W[e]ᵀ.</summary>
    public static FusedGemmCall NT(FusedGemm gemm, DeviceRange a, DeviceRange w, DeviceRange c, GroupedRows rows, int n, int k,
        RowSource aRows, RowTarget cRows, DeviceRange rowScale) =>
        new(gemm, a, w, c, rows, n, k, aRows, cRows, RowSource.Identity, rowScale);

    /// <summary>Backward data NN: C [R,K] = A [R,N] · W[e].</summary>
    public static FusedGemmCall NN(FusedGemm gemm, DeviceRange a, DeviceRange w, DeviceRange c, GroupedRows rows, int n, int k,
        RowSource aRows, RowTarget cRows) =>
        new(gemm, a, w, c, rows, n, k, aRows, cRows, RowSource.Identity, DeviceRange.Null);

    /// <summary>Backward weight TN: dW [E,N,K] = Σ_{r∈e} A[r]ᵀ B[r].</summary>
    public static FusedGemmCall TN(FusedGemm gemm, DeviceRange a, DeviceRange b, DeviceRange dw, GroupedRows rows, int n, int k,
        RowSource aRows, RowSource bRows) =>
        new(gemm, a, b, dw, rows, n, k, aRows, RowTarget.Identity, bRows, DeviceRange.Null);

    /// <summary>Backward weight TN with an f32 output, both row operands as they are: dW [E,N,K] f32 = Σ_{r∈e} A[r]ᵀ B[r].</summary>
    public static FusedGemmCall TNFloat32(FusedGemm gemm, DeviceRange a, DeviceRange b, DeviceRange dw, GroupedRows rows, int n, int k) =>
        new(gemm, a, b, dw, rows, n, k, RowSource.Identity, RowTarget.Identity, RowSource.Identity, DeviceRange.Null, Float32Output: true);

    /// <summary>The configurations autotuning may time for this call on <paramref name="gemm"/>'s path (the f32-output
    /// ones for an f32-output call), less those its K rules out (<see cref="GemmConfig.ShapeProblem"/>).</summary>
    public IReadOnlyList<GemmConfig> Candidates(GroupedGemm gemm, ScalarType dtype)
    {
        (GroupedGemmLayout layout, int n, int k) = (Layout, N, K);
        return [.. (Float32Output ? gemm.Float32OutputCandidates(dtype) : gemm.Candidates(layout, dtype)).Where(c => c.ShapeProblem(layout, n, k) is null)];
    }

    /// <summary>The sm_90a tile this call launches with <paramref name="config"/> (NT, NN), or null when it runs an
    /// sm_80/SIMT kernel: where a fused SwiGLU/dSwiGLU epilogue can replace it with the same bits.</summary>
    public GemmConfig? Sm90aConfig(GroupedGemm gemm, ScalarType dtype, GemmConfig? config) =>
        Layout == GroupedGemmLayout.BackwardWeightTN ? null : gemm.Sm90aConfigFor(Layout, dtype, config, A, B, C, Rows, N, K, ARows, CRows);

    /// <summary>Enqueues the GEMM on <paramref name="stream"/> with <paramref name="config"/> (null: the default).</summary>
    public void Launch(GroupedGemm gemm, CudaStream stream, ScalarType dtype, GemmConfig? config)
    {
        switch (Layout)
        {
            case GroupedGemmLayout.ForwardNT:
                gemm.ForwardNT(stream, dtype, config, A, B, C, Rows, N, K, ARows, CRows, RowScale);
                break;
            case GroupedGemmLayout.BackwardDataNN:
                gemm.BackwardDataNN(stream, dtype, config, A, B, C, Rows, N, K, ARows, CRows);
                break;
            default:
                if (Float32Output) gemm.BackwardWeightTNFloat32(stream, dtype, config, A, B, C, Rows, N, K, ARows, BRows);
                else gemm.BackwardWeightTN(stream, dtype, config, A, B, C, Rows, N, K, ARows, BRows);
                break;
        }
    }
}
