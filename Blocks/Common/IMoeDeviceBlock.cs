using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Blocks;

/// <summary>
/// The device form of a Qwen3-MoE expert block: device buffers in the block's storage dtype in and out, enqueued on
/// an explicit stream of the block's context. Implemented by <see cref="Qwen3MoeFusedBlock"/> (PTX, graph capturable)
/// and <see cref="CublasDeviceGroupedBlock"/> (cuBLAS grouped GEMMs, synchronises once per forward); the host form is
/// <see cref="IMoeHostBlock"/>. The element type TElem below is <see cref="BFloat16"/>, <see cref="Half"/> or
/// <see cref="float"/>, matching <see cref="DType"/>.
/// </summary>
public interface IMoeDeviceBlock : IDisposable
{
    /// <summary>Short implementation name used in benchmark rows: "fused", "cublas-grouped".</summary>
    string Name { get; }

    CudaContext Context { get; }

    MoeConfig Config { get; }

    ScalarType DType { get; }

    /// <summary>True when a forward/backward can be captured into a CUDA graph (no host synchronisation inside).</summary>
    bool IsGraphCapturable { get; }

    /// <summary>Allocates what T tokens need ahead of time (forward, and backward when asked). Synchronous.</summary>
    /// <exception cref="ArgumentOutOfRangeException">T &lt; 1 or above the device limit.</exception>
    void Reserve(int tokens, bool backward = false);

    /// <summary>Y [T,H] = MoE(X [T,H]) on <paramref name="stream"/>; with <paramref name="routing"/> its top-k replaces the router's.</summary>
    /// <exception cref="ArgumentException">Wrong element type, a buffer too short, aliased X/Y, another context.</exception>
    void Forward<TElem>(CudaStream stream, DeviceBuffer<TElem> x /*[T,H]*/, DeviceBuffer<TElem> y /*[T,H]*/, int tokens,
        DeviceRouting<TElem>? routing = null) where TElem : unmanaged;

    /// <summary>The five gradients of the last forward for dY [T,H], overwritten, on <paramref name="stream"/>.</summary>
    /// <exception cref="InvalidOperationException">No forward yet (or the block is inference only).</exception>
    /// <exception cref="ArgumentException">Wrong element type, a buffer too short, another context.</exception>
    void Backward<TElem>(CudaStream stream, DeviceBuffer<TElem> dY /*[T,H]*/, DeviceGradients<TElem> gradients) where TElem : unmanaged;

    /// <summary>Experts that received at least one token in the last forward (for the cost model). Synchronises.</summary>
    int CountExpertsHit();
}
