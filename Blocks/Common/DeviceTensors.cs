using MoeNative.Interop;

namespace MoeNative.Blocks;

/// <summary>
/// Routing computed elsewhere (e.g. by a reference), passed to <see cref="Qwen3MoeFusedBlock.Forward{TElem}"/> so
/// that two implementations are compared under the same top-k decision. Expert ids must lie in [0,E) and be distinct
/// per token (not checked on the device; the host API checks them).
/// </summary>
/// <param name="Selected">Expert id per slot p = t*k + j. // [T,k] i32</param>
/// <param name="Weights">Routing weight per slot, storage dtype. // [T,k]</param>
public sealed record DeviceRouting<TElem>(DeviceBuffer<int> Selected, DeviceBuffer<TElem> Weights) where TElem : unmanaged;

/// <summary>
/// Output buffers of <see cref="Qwen3MoeFusedBlock.Backward{TElem}"/>: the five gradients, storage dtype, overwritten
/// (not accumulated). gate_proj and up_proj stay stacked as in the weights: rows 0..I-1 of each expert are the gate,
/// rows I..2I-1 the up projection.
/// </summary>
/// <param name="HiddenStates">dX. // [T,H]</param>
/// <param name="Gate">d gate.weight. // [E,H]</param>
/// <param name="GateUpProj">d gate_up_proj. // [E,2I,H]</param>
/// <param name="DownProj">d down_proj. // [E,H,I]</param>
public sealed record DeviceGradients<TElem>(
    DeviceBuffer<TElem> HiddenStates,
    DeviceBuffer<TElem> Gate,
    DeviceBuffer<TElem> GateUpProj,
    DeviceBuffer<TElem> DownProj) where TElem : unmanaged;
