using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Cli.Verification;

/// <summary>One implementation under verification: a forward (optionally under forced routing) and the backward of
/// that forward, both on host arrays.</summary>
public interface IVerifiedImplementation : IDisposable
{
    /// <summary>e.g. "hf (host)", "grouped (cuBLAS)", "fused (PTX)".</summary>
    string Name { get; }

    /// <param name="x">hidden_states. // [T,H]</param>
    /// <param name="tokens">T.</param>
    /// <param name="routing">Selected experts + weights to use instead of the router's own top-k; null = route.</param>
    MoeIntermediates Forward(float[] x, int tokens, MoeRouting? routing);

    /// <summary>The five gradients of the forward <paramref name="saved"/> (which must be this implementation's last
    /// <see cref="Forward"/>: the fused block keeps its own saved state and ignores the argument).</summary>
    /// <param name="saved">What <see cref="Forward"/> returned.</param>
    /// <param name="dY">grad_output. // [T,H]</param>
    MoeGradients Backward(MoeIntermediates saved, float[] dY);
}

/// <summary>The HF loop or the grouped reference on the host or on cuBLAS.</summary>
public sealed class ReferenceImplementation(MoeReference reference, string name) : IVerifiedImplementation
{
    public string Name { get; } = name;

    public MoeIntermediates Forward(float[] x, int tokens, MoeRouting? routing) => reference.Forward(x, routing);

    public MoeGradients Backward(MoeIntermediates saved, float[] dY) => reference.Backward(saved, dY);

    public void Dispose()
    {
    }
}

/// <summary>The fused PTX block through its host API.</summary>
public sealed class FusedImplementation(Qwen3MoeFusedBlock block) : IVerifiedImplementation
{
    public string Name => "fused (PTX)";

    public MoeIntermediates Forward(float[] x, int tokens, MoeRouting? routing) =>
        block.Forward(x, tokens, routing, intermediates: true);

    public MoeGradients Backward(MoeIntermediates saved, float[] dY) => block.Backward(dY);

    public void Dispose() => block.Dispose();

    public static FusedImplementation Create(CudaContext context, MoeWeights weights, ScalarType dtype, FusedBlockOptions? options = null) =>
        new(new Qwen3MoeFusedBlock(context, weights, dtype, options));
}
