using System.Runtime.InteropServices;

namespace MoeNative.Ptx;

// Launch parameter blocks of the grouped-GEMM kernels: one field per .entry parameter, in order (a CPU test checks
// every specialisation in PtxCatalog). Pointers are device addresses (.u64), dims and modes .s32.

/// <summary>.entry parameters of <c>grouped_gemm_nt_*</c> (forward).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GroupedGemmForwardArgs
{
    public ulong A;          // [*, K] dtype, row a(r)
    public ulong W;          // [E, N, K] dtype
    public ulong C;          // [*, N] dtype (out), row c(r)
    public ulong MSizes;     // [E] i32
    public ulong Gather;     // [T*k] i32 or 0
    public ulong RowScale;   // [T*k] dtype or 0 (scale(r) = RowScale[gather[r]])
    public int Experts;      // E
    public int N;
    public int K;
    public int AMode;        // RowSource
    public int CMode;        // RowTarget
    public int TopK;         // k
}

/// <summary>.entry parameters of <c>grouped_gemm_nn_*</c> (backward data).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GroupedGemmBackwardDataArgs
{
    public ulong A;          // [*, N] dtype (dY), row a(r)
    public ulong W;          // [E, N, K] dtype
    public ulong C;          // [*, K] dtype (out, dX), row c(r)
    public ulong MSizes;     // [E] i32
    public ulong Gather;     // [T*k] i32 or 0
    public int Experts;      // E
    public int N;
    public int K;
    public int AMode;        // RowSource
    public int CMode;        // RowTarget
    public int TopK;         // k
}

/// <summary>.entry parameters of <c>grouped_gemm_tn_*</c> (backward weight).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GroupedGemmBackwardWeightArgs
{
    public ulong A;          // [*, N] dtype (dY), row a(r)
    public ulong B;          // [*, K] dtype (X), row b(r)
    public ulong DW;         // [E, N, K] dtype (out, overwritten)
    public ulong MSizes;     // [E] i32
    public ulong Gather;     // [T*k] i32 or 0
    public int Experts;      // E
    public int N;
    public int K;
    public int AMode;        // RowSource
    public int BMode;        // RowSource
    public int TopK;         // k
}
