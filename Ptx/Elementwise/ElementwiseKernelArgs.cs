using System.Runtime.InteropServices;

namespace MoeNative.Ptx;

// Launch arguments of the elementwise kernels: one struct per .entry, fields in .param order
// (ulong = .u64 device pointer, int = .s32). PtxCatalog pairs each with its entry and a CPU test checks every
// specialisation. Dimension legend: T tokens, k top-k, TK = T*k token slots, H hidden, I intermediate, R rows.
// p = t*k + j token slot; r expert-ordered row; gather[r] = p; inverse[p] = r.

/// <summary><c>moe_gather_rows_{dtype}</c>: one CTA per destination row.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GatherRowsArgs
{
    public ulong Source;    // [T,H] dtype in
    public ulong Gather;    // [TK] i32 in
    public ulong Dest;      // [TK,H] dtype out: Dest[r] = Source[gather[r] / k]
    public int TokenSlots;  // TK
    public int TopK;        // k
    public int Hidden;      // H
    public int Vectorised;  // 1: H % 8 == 0 and 16-byte aligned bases -> 16-byte loads/stores, 8 elements per thread
}

/// <summary><c>moe_silu_mul_{dtype}</c>: one CTA per row.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SiluMulArgs
{
    public ulong GateUp;    // [R,2I] dtype in: [g | u]
    public ulong Act;       // [R,I] dtype out: silu(g) * u
    public int Rows;        // R
    public int Inter;       // I
    public int Vectorised;  // 1: I % 8 == 0 and 16-byte aligned bases
}

/// <summary><c>moe_silu_mul_backward_{dtype}</c>: one CTA per row.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SiluMulBackwardArgs
{
    public ulong GateUp;    // [R,2I] dtype in (forward input)
    public ulong DAct;      // [R,I] dtype in
    public ulong DGateUp;   // [R,2I] dtype out: [dg | du]
    public int Rows;        // R
    public int Inter;       // I
    public int Vectorised;  // 1: I % 8 == 0 and 16-byte aligned bases
}

/// <summary><c>moe_silu_mul_backward_routed_{dtype}</c>: one CTA per row.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SiluMulBackwardRoutedArgs
{
    public ulong GateUp;    // [R,2I] dtype in (forward G1)
    public ulong DAct;      // [R,I] dtype in: dA_u, the unscaled GEMM2 dX
    public ulong Gather;    // [R] i32 in: slot p of row r
    public ulong Weights;   // [R] dtype in: w[p], token-slot order
    public ulong DGateUp;   // [R,2I] dtype out: [dg | du] of w[p] * dA_u
    public ulong ActW;      // [R,I] dtype out: rnd(w[p] * a)
    public ulong DWeights;  // [R] f32 out: dw[p] = <dA_u[r], a[r]>
    public int Rows;        // R
    public int Inter;       // I
    public int Vectorised;  // 1: I % 8 == 0 and 16-byte aligned bases
}

/// <summary><c>moe_topk_combine_{dtype}</c>: one CTA per token.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct TopKCombineArgs
{
    public ulong Expert;    // [TK,H] dtype in: U, row(p) = rowOfSlot ? rowOfSlot[p] : p
    public ulong RowOfSlot; // [TK] i32 in, or 0 for identity
    public ulong Weights;   // [T,k] dtype in
    public ulong Output;    // [T,H] dtype out
    public int Tokens;      // T
    public int TopK;        // k
    public int Hidden;      // H
    public int Vectorised;  // 1: H % 8 == 0 and 16-byte aligned bases
}

/// <summary><c>moe_topk_combine_backward_{dtype}</c>: one CTA per token.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct TopKCombineBackwardArgs
{
    public ulong DOutput;   // [T,H] dtype in
    public ulong Expert;    // [TK,H] dtype in (forward U)
    public ulong RowOfSlot; // [TK] i32 in, or 0 for identity
    public ulong Weights;   // [T,k] dtype in
    public ulong DExpert;   // [TK,H] dtype out at row(p)
    public ulong DWeights;  // [T,k] f32 out
    public int Tokens;      // T
    public int TopK;        // k
    public int Hidden;      // H
    public int Vectorised;  // 1: H % 8 == 0 and 16-byte aligned bases
}

/// <summary><c>moe_sum_over_topk_{dtype}</c>: one CTA per token.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SumOverTopKArgs
{
    public ulong Slots;     // [TK,H] dtype in, token-slot order
    public ulong Addend;    // [T,H] dtype in, or 0
    public ulong Output;    // [T,H] dtype out
    public int Tokens;      // T
    public int TopK;        // k
    public int Hidden;      // H
    public int Vectorised;  // 1: H % 8 == 0 and 16-byte aligned bases
}
