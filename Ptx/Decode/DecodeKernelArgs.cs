using System.Runtime.InteropServices;

namespace MoeNative.Ptx;

// Launch arguments of the decode kernels (decode_experts.ptx): one struct per .entry, fields in .param order
// (ulong = .u64 device pointer, int = .s32). Dimension legend: T tokens, k top-k, TK = T*k token slots, E experts,
// H hidden, I intermediate; r expert-ordered row, p = t*k + j token slot; gather[r] = p; inverse[p] = r.

/// <summary><c>moe_decode_gate_up_silu_{dtype}</c>: grid (G &lt;= ceil(I/4), min(E, TK)), block 128.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct DecodeGateUpSiluArgs
{
    public ulong X;         // [T,H] dtype in
    public ulong GateUp;    // Wgu [E,2I,H] dtype in
    public ulong MSizes;    // [E] i32 in
    public ulong Gather;    // [TK] i32 in
    public ulong FirstGemm; // G1 [TK,2I] dtype out (expert order), or 0 = not written
    public ulong Act;       // A [TK,I] dtype out (expert order)
    public int Experts;     // E (<= 256)
    public int TopK;        // k
    public int Hidden;      // H (multiple of 8)
    public int Inter;       // I
    public int Prefetch;    // 1: weight rows asked of L2 2 KB ahead of the loads; 0: no prefetch
    public uint TopKMagic;  // ceil(2^32 / k) for k >= 2, 0 for k = 1 (the kernel's slot / k without a division)
    public ulong Fill;      // Wd [E,H,I] dtype: the down kernel's weights, asked of L2 by this kernel
    public ulong FillBytes; // bytes of each hit expert's Wd[e] asked of L2, from its start (<= H*I*2); 0 = no fill
    public ulong Record;    // T = 1: the route record [DecodeRouteRecordBytes] the routing kernel publishes, or 0 = m_sizes/gather
}

/// <summary><c>moe_decode_down_token_{dtype}</c>: T = 1, grid (H/2), block 32 min(k, 4) (k &lt;= 32).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct DecodeDownTokenArgs
{
    public ulong Act;        // A  [k,I]   dtype in (expert order)
    public ulong Down;       // Wd [E,H,I] dtype in
    public ulong MSizes;     // [E] i32 in
    public ulong Gather;     // [k] i32 in
    public ulong Inverse;    // [k] i32 in
    public ulong RowScale;   // [k] dtype in by slot (FuseMulPost passes w), or 0 = no scale
    public ulong SecondGemm; // G2 [k,H] dtype out at row c(r)
    public ulong Weights;    // [1,k] dtype in (combine weights), or 0 = all 1
    public ulong Output;     // Y [1,H] dtype out
    public int Experts;      // E (<= 256)
    public int TopK;         // k (<= 32)
    public int Hidden;       // H (multiple of 8)
    public int Inter;        // I (multiple of 8)
    public int SlotOrder;    // 0: G2 in expert order (row r); 1: token-slot order (row gather[r])
    public int Prefetch;     // 1: weight rows asked of L2 2 KB ahead of the loads; 0: no prefetch
    public ulong Record;     // the route record (CTA 0 zeroes its words once the gate/up grid has ended), or 0 = m_sizes
}

/// <summary><c>moe_decode_down_combine_{dtype}</c>: grid (D, min(E, TK)), ceil(H/8/32) &lt;= D &lt;= H/8, block 128.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct DecodeDownCombineArgs
{
    public ulong Act;        // A [TK,I] dtype in (expert order)
    public ulong Down;       // Wd [E,H,I] dtype in
    public ulong MSizes;     // [E] i32 in
    public ulong Gather;     // [TK] i32 in
    public ulong Inverse;    // [TK] i32 in
    public ulong RowScale;   // [TK] dtype in by slot, or 0 = no scale (FuseMulPost passes w)
    public ulong SecondGemm; // G2 [TK,H] dtype out at row c(r)
    public ulong Weights;    // [T,k] dtype in (combine weights), or 0 = all 1
    public ulong Output;     // Y [T,H] dtype out
    public ulong Counters;   // [H/8] u32: 0 before the launch, left 0 after it
    public int Tokens;       // T
    public int Experts;      // E (<= 256)
    public int TopK;         // k
    public int Hidden;       // H (multiple of 8)
    public int Inter;        // I (multiple of 8)
    public int SlotOrder;    // 0: G2 in expert order (row r); 1: token-slot order (row gather[r])
    public int Prefetch;     // 1: weight rows asked of L2 2 KB ahead of the loads; 0: no prefetch
    public ulong Record;     // T = 1: the route record (CTA (0,0) zeroes it once the gate/up grid has ended), or 0 = m_sizes
}
