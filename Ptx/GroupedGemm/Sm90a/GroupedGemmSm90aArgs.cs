using System.Runtime.InteropServices;
using MoeNative.Interop;

namespace MoeNative.Ptx;

/// <summary>.entry parameters of <c>grouped_gemm_{nt,nn}_sm90a_*</c> (the row-tiled Hopper kernels): the weight travels
/// as a tensor map (first, after the 48-byte gap that puts it on a 64-byte aligned parameter address, see
/// CudaTensorMap), the rest as in <see cref="GroupedGemmForwardArgs"/> without the W pointer. N = output columns,
/// K = reduction (for NN: the forward's K and N); RowScale 0 for NN. Aux: the fused epilogues' G1 (swiglu: out or 0,
/// dswiglu: in), 0 for the plain epilogue. AMap / ATma: A's rows by TMA when they are in expert order (see
/// GroupedGemm.RowOperandByTma; the map's 64-byte alignment holds: 48 + 128 + 0x210 is a multiple of 64).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GroupedGemmRowsSm90aArgs
{
    public CudaParamGap48 Gap;  // not a parameter: buffer bytes 0..47
    public CudaTensorMap WMap;  // W [E, N, K] dtype as (K, N, E), box (64, BN, 1), 128B swizzle
    public CudaTensorMap AMap;  // A [R, K] dtype as (K, R), box (64, 64), 128B swizzle; read when ATma = 1
    public ulong A;          // [*, K] dtype, row a(r)
    public ulong C;          // [*, N] dtype (out), row c(r)
    public ulong MSizes;     // [E] i32
    public ulong Gather;     // [T*k] i32 or 0
    public ulong RowScale;   // [T*k] dtype or 0
    public int Experts;      // E
    public int N;
    public int K;
    public int AMode;        // RowSource
    public int CMode;        // RowTarget
    public int TopK;         // k
    public ulong Aux;        // G1 [T*k, 2I] dtype or 0 (GroupedGemmEpilogue)
    public int ATma;         // 1 = A's stages by TMA through AMap (AMode Identity), 0 = the producer's row copies
}

/// <summary>.entry parameters of <c>grouped_gemm_tn_sm90a_*</c> (the Hopper weight-gradient kernel): dW's tensor map
/// first (the epilogue's TMA stores; after the 48-byte gap, as in <see cref="GroupedGemmRowsSm90aArgs"/>), then the
/// parameters of <see cref="GroupedGemmBackwardWeightArgs"/>.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GroupedGemmWeightSm90aArgs
{
    public CudaParamGap48 Gap;  // not a parameter: buffer bytes 0..47
    public CudaTensorMap DwMap; // dW [E, N, K] dtype or f32 as (K, N, E), box (128 B of columns, 16 rows, 1), 128B swizzle
    public ulong A;          // [*, N] dtype (dY), row a(r)
    public ulong B;          // [*, K] dtype (X), row b(r)
    public ulong DW;         // [E, N, K] dtype or f32 (out, overwritten; the zero tiles of experts without rows)
    public ulong MSizes;     // [E] i32
    public ulong Gather;     // [T*k] i32 or 0
    public int Experts;      // E
    public int N;
    public int K;
    public int AMode;        // RowSource
    public int BMode;        // RowSource
    public int TopK;         // k
}

/// <summary>.entry parameters of <c>wgmma_layout_probe_sm90a_*</c> (test kernel).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct WgmmaLayoutProbeArgs
{
    public ulong A;          // [64 m, 64 k] (K-major) or [64 k, 64 m] (MN-major) dtype
    public ulong B;          // [128 n, 64 k] (K-major) or [64 k, 128 n] (N-major) dtype
    public ulong D;          // [64, 128] f32 (out)
    public int Mode;         // 0 K-major A and B | 1 K-major A, N-major B | 2 MN-major A, N-major B
}
