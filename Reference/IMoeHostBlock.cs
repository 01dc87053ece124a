using MoeNative.Interop;

namespace MoeNative.Reference;

/// <summary>
/// The host form of a Qwen3-MoE expert block: host arrays in and out, forward (optionally under forced routing) then
/// the backward of that forward. Implemented by the references (<see cref="HfMoeReference"/>,
/// <see cref="GroupedMoeReference"/>), the cuBLAS grouped block and the fused PTX block (MoeNative.Blocks), so a
/// caller (verify, benchmarks, tests) compares any of them without adapters. The device form is
/// <c>MoeNative.Blocks.IMoeDeviceBlock</c>. Not thread-safe: the block remembers its last forward.
/// </summary>
public interface IMoeHostBlock
{
    /// <summary>Short implementation name: "hf", "grouped", "reference-cublas", "fused".</summary>
    string Name { get; }

    MoeConfig Config { get; }

    /// <summary>Storage dtype the block rounds inputs, weights and storage intermediates to.</summary>
    ScalarType DType { get; }

    /// <summary>
    /// Forward of T = x.Length / H tokens, every intermediate returned. With <paramref name="routing"/> its selected
    /// experts and weights replace the router's top-k (logits and probabilities are still computed).
    /// </summary>
    /// <param name="x">hidden_states. // [T,H]</param>
    /// <param name="routing">Forced routing ([T,k] ids, [T,k] weights) or null to route.</param>
    /// <exception cref="ArgumentException">x is not [T,H]; routing does not match T, k or E.</exception>
    MoeIntermediates Forward(float[] x, MoeRouting? routing = null);

    /// <summary>The five gradients of the last <see cref="Forward"/> for ∂loss/∂Y = <paramref name="dY"/> (overwritten, not accumulated).</summary>
    /// <param name="dY">grad_output. // [T,H]</param>
    /// <exception cref="InvalidOperationException">No forward yet (or the block is inference only).</exception>
    /// <exception cref="ArgumentException">dY is not [T,H] for the T of the last forward.</exception>
    MoeGradients Backward(float[] dY);
}
