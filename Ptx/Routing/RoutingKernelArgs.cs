using System.Runtime.InteropServices;

namespace MoeNative.Ptx;

// Launch arguments of the routing kernels: one struct per .entry, fields in .param order
// (ulong = .u64 device pointer, int = .s32). PtxCatalog pairs each with its entry and a CPU test checks every
// specialisation. Dimension legend: T tokens, E experts, k top-k, TK = T*k token slots, H hidden.
// p = t*k + j token slot; r expert-ordered row; gather[r] = p; inverse[p] = r.

/// <summary><c>moe_router_softmax_topk_{dtype}</c>: one warp per token.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RouterSoftmaxTopKArgs
{
    public ulong Logits;    // [T,E] dtype in
    public ulong Probs;     // [T,E] f32 out: softmax
    public ulong Selected;  // [T,k] i32 out: expert ids, descending prob, ties -> lower id
    public ulong Weights;   // [T,k] dtype out: (renormalised) top-k probs
    public int Tokens;      // T
    public int Experts;     // E (1..256)
    public int TopK;        // k (1..E)
    public int NormTopK;    // 1: divide by the sum of the k selected probs
}

/// <summary><c>moe_router_softmax_topk_backward_{dtype}</c>: one warp per token.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RouterSoftmaxTopKBackwardArgs
{
    public ulong Probs;     // [T,E] f32 in (forward softmax)
    public ulong Selected;  // [T,k] i32 in
    public ulong DWeights;  // [T,k] f32 in
    public ulong DLogits;   // [T,E] dtype out (overwritten)
    public int Tokens;      // T
    public int Experts;     // E (1..256)
    public int TopK;        // k
    public int NormTopK;    // 1 when the forward renormalised
}

/// <summary><c>moe_routing_count_chunks_i32</c>: one CTA per chunk of S slots, shared-memory histogram (E ints of dynamic shared memory).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RoutingCountArgs
{
    public ulong Selected;  // [TK] i32 in
    public ulong Counts;    // [C,E] i32 out: ids of expert e in chunk c
    public int TokenSlots;  // TK
    public int Experts;     // E
    public int ChunkSlots;  // S (multiple of 256)
}

/// <summary><c>moe_routing_scan_chunks_i32</c>: one CTA; m_sizes and, in place, the first row of each (chunk, expert).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RoutingScanArgs
{
    public ulong Counts;    // [C,E] i32 in: counts; out: off_e + counts of expert e in the earlier chunks
    public ulong MSizes;    // [E] i32 out
    public int Chunks;      // C
    public int Experts;     // E
}

/// <summary><c>moe_routing_scatter_chunks_i32</c>: one CTA per chunk, walks its slots in order.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RoutingScatterArgs
{
    public ulong Selected;  // [TK] i32 in
    public ulong Bases;     // [C,E] i32 in (from the scan)
    public ulong Gather;    // [TK] i32 out: gather[r] = p
    public ulong Inverse;   // [TK] i32 out: inverse[p] = r
    public int TokenSlots;  // TK
    public int Experts;     // E
    public int ChunkSlots;  // S
}

/// <summary><c>moe_router_logits_gemv_{bf16|fp16}</c>: L [T,E] = X·Wrᵀ for small T, two experts x eight tokens per CTA.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RouterLogitsGemvArgs
{
    public ulong X;         // [T,H] dtype in
    public ulong Wr;        // [E,H] dtype in
    public ulong Logits;    // [T,E] dtype out
    public int Tokens;      // T
    public int Experts;     // E
    public int Hidden;      // H (multiple of 8)
}

/// <summary><c>moe_routing_decode_{bf16|fp16}</c>: the whole routing of T &lt;= 16 tokens in one launch, grid (⌈E/2⌉, ⌈T/8⌉) x 128.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RoutingDecodeArgs
{
    public ulong X;         // [T,H] dtype in
    public ulong Wr;        // [E,H] dtype in
    public ulong Logits;    // [T,E] dtype out
    public ulong Probs;     // [T,E] f32 out
    public ulong Selected;  // [T,k] i32 out
    public ulong Weights;   // [T,k] dtype out
    public ulong MSizes;    // [E] i32 out
    public ulong Gather;    // [TK] i32 out
    public ulong Inverse;   // [TK] i32 out
    public ulong Counter;   // [1] u32: 0 before the launch, left 0 after it
    public int Tokens;      // T (1..16)
    public int Experts;     // E (1..256)
    public int TopK;        // k
    public int Hidden;      // H (multiple of 8)
    public int NormTopK;    // 1: divide by the sum of the k selected probs
    public ulong Record;    // T = 1: the route record [DecodeRouteRecordBytes] u32, all 0, published after the top-k; or 0 = none
}

/// <summary><c>moe_router_dw_reduce_{dtype}</c>: dWr = the f32 sum of S f32 row-chunk partials in chunk order, rounded once; 8 elements per thread.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RouterDwReduceArgs
{
    public ulong Partials;  // [S,E,H] f32 in
    public ulong Output;    // [E,H] dtype out
    public int Count;       // n = E*H
    public int Splits;      // S
    public int Vectorised;  // 1: 16-byte loads/stores
}
