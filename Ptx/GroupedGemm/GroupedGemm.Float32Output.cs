using MoeNative.Interop;

namespace MoeNative.Ptx;

/// <summary>
/// The backward-weight (TN) GEMM with an f32 output: the accumulators stored unrounded, for partial sums that a second
/// pass adds and rounds once (the router dW split over row chunks). The sm_80 and sm_90a tensor-core TN kernels have
/// this epilogue; the SIMT kernel does not, so a call needs the tensor-core shape (<see cref="SuitsFloat32Output"/>).
/// </summary>
public sealed partial class GroupedGemm
{
    /// <summary>
    /// <c>dW[e, n, k] = Σ_{r∈e} A[a(r), n] · B[b(r), k]</c> as <see cref="BackwardWeightTN"/>, stored as f32 without
    /// rounding; experts without rows get zeros; deterministic (one CTA per tile, rows in order).
    /// </summary>
    /// <param name="stream">Stream of this context.</param>
    /// <param name="dtype">Storage dtype of A and B: bf16 or fp16.</param>
    /// <param name="config">A tensor-core TN tile (one of <see cref="Float32OutputCandidates"/>), or null for a default.</param>
    /// <param name="a">[R, N] or [R/k, N] dtype (dY).</param>
    /// <param name="b">[R, K] or [R/k, K] dtype (X).</param>
    /// <param name="dw">[E, N, K] f32, out (overwritten).</param>
    /// <param name="rows">m_sizes, gather, R, E, k.</param>
    /// <param name="n">N (a multiple of 8).</param>
    /// <param name="k">K (a multiple of 8).</param>
    /// <param name="aRows">Where A's rows come from.</param>
    /// <param name="bRows">Where B's rows come from.</param>
    /// <exception cref="ArgumentException">N or K not a multiple of 8, an operand not 16-byte aligned, fp32 operands, or
    /// a configuration without the f32 epilogue (the message says which).</exception>
    public void BackwardWeightTNFloat32(CudaStream stream, ScalarType dtype, GemmConfig? config,
        DeviceRange a, DeviceRange b, DeviceRange dw, GroupedRows rows, int n, int k,
        RowSource aRows, RowSource bRows) =>
        LaunchBackwardWeight(stream, dtype, config, a, b, dw, rows, n, k, aRows, bRows, float32Output: true);

    /// <summary>Whether <see cref="BackwardWeightTNFloat32"/> takes this shape: bf16/fp16, N and K multiples of 8 and every
    /// operand 16-byte aligned (the tensor-core kernels' 16-byte chunks).</summary>
    public static bool SuitsFloat32Output(ScalarType dtype, int n, int k, DeviceRange a, DeviceRange b, DeviceRange dw) =>
        dtype is ScalarType.BFloat16 or ScalarType.Float16 && n > 0 && k > 0 && n % 8 == 0 && k % 8 == 0
        && a.Pointer % 16 == 0 && b.Pointer % 16 == 0 && dw.Pointer % 16 == 0;

    /// <summary>Validation of an f32-output call before any other check: TN, plain epilogue, bf16/fp16, and an explicit
    /// configuration with the f32 epilogue.</summary>
    private static void CheckFloat32OutputCall(GroupedGemmLayout layout, ScalarType dtype, GroupedGemmEpilogue epilogue, GemmConfig? config)
    {
        if (layout != GroupedGemmLayout.BackwardWeightTN)
            throw new ArgumentException($"Only the TN (weight-gradient) GEMM stores f32; got {layout}.", nameof(layout));
        if (dtype is not (ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentException($"The f32-output TN GEMM takes bf16 or fp16 operands; got {dtype}.", nameof(dtype));
        if (config is not null && GroupedGemmSpecs.Float32OutputProblem(layout, dtype, config, epilogue) is { } problem)
            throw new ArgumentException($"Invalid f32-output {dtype.ShortName()} grouped-GEMM configuration {config.Name}: {problem}", nameof(config));
    }

    /// <summary>The tile of an f32-output call (after the pointer and size checks): the explicit one, else on sm_90a the
    /// 128x128 s4 tile (the only Hopper TN tile whose f32 staging fits), else the sm_80 TN default.</summary>
    private static GemmConfig Float32OutputConfig(ScalarType dtype, GemmConfig? config, (int Major, int Minor) computeCapability,
        int multiprocessors, bool sm90a, bool tensorCoreShape, GroupedRows rows, int n, int k, DeviceRange a, DeviceRange b, DeviceRange dw)
    {
        if (!tensorCoreShape)
            throw new ArgumentException(
                $"The f32-output TN GEMM runs on tensor cores only: N = {n} and K = {k} must be multiples of 8 and a, b, dw 16-byte aligned (0x{a.Pointer:X}, 0x{b.Pointer:X}, 0x{dw.Pointer:X}).",
                nameof(dw));
        if (config is not null) return config;
        if (sm90a && Sm90aAvailable(computeCapability)) return GroupedGemmSm90aSpecs.Float32OutputDefault;
        return DefaultConfig(GroupedGemmLayout.BackwardWeightTN, dtype, computeCapability, multiprocessors, rows, n, k, sm90a: false);
    }
}
