namespace MoeNative.Ptx;

/// <summary>
/// What a row-tiled grouped GEMM does with its f32 accumulator tile. Only the sm_90a kernels have the fused
/// epilogues; the sm_80 path runs the plain GEMM and then the separate SwiGLU kernels (same math, same roundings).
/// </summary>
public enum GroupedGemmEpilogue
{
    /// <summary>C = scale · acc, rounded once to the dtype.</summary>
    Plain,

    /// <summary>Forward NT of GEMM1 (W = Wgu [E, 2I, K]): g, u = the dtype-rounded gate/up outputs (optionally stored
    /// as G1 [R, 2I]); A [R, I] = silu(g)·u in f32, rounded once (what SiluMulForward computes from G1).</summary>
    SwiGlu,

    /// <summary>Backward-data NN of GEMM2 (dA = dG2·Wd[e]): dA rounded to the dtype, then with g, u read from
    /// G1 [R, 2I]: dG1 [R, 2I] = [dA·u·s·(1 + g(1 − s)) | dA·g·s], s = sigmoid(g) (what SiluMulBackward computes).</summary>
    DSwiGlu,
}
