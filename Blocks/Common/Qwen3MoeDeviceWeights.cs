using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Blocks;

/// <summary>
/// The parameters of one Qwen3-MoE expert layer on the device, in one storage dtype: uploaded once (<see cref="Upload"/>),
/// streamed from a checkpoint (<see cref="FromSafetensors"/>) or over memory owned elsewhere (<see cref="FromDevice"/>).
/// Several blocks (e.g. one per option set) may share one instance; the owner disposes it after them.
/// </summary>
public sealed class Qwen3MoeDeviceWeights : IDisposable
{
    private readonly DeviceBuffer<byte> _router;   // [E,H]    dtype
    private readonly DeviceBuffer<byte> _gateUp;   // [E,2I,H] dtype
    private readonly DeviceBuffer<byte> _down;     // [E,H,I]  dtype
    private bool _disposed;

    private Qwen3MoeDeviceWeights(CudaContext context, MoeConfig config, ScalarType dtype,
        DeviceBuffer<byte> router, DeviceBuffer<byte> gateUp, DeviceBuffer<byte> down)
    {
        Context = context;
        Config = config;
        DType = dtype;
        _router = router;
        _gateUp = gateUp;
        _down = down;
    }

    /// <summary>The context the weights live in.</summary>
    public CudaContext Context { get; }

    /// <summary>Shapes: H, I, E, k.</summary>
    public MoeConfig Config { get; }

    /// <summary>Storage dtype of every weight (and of the activations of blocks built on these weights).</summary>
    public ScalarType DType { get; }

    /// <summary>Device bytes held: (E·H + 3·E·I·H) · sizeof(dtype).</summary>
    public long SizeInBytes => _router.SizeInBytes + _gateUp.SizeInBytes + _down.SizeInBytes;

    /// <summary>Router weight <c>gate.weight</c>. // [E,H] dtype</summary>
    internal ulong Gate => Alive()._router.DevicePointer;

    /// <summary>Stacked gate/up projections. // [E,2I,H] dtype</summary>
    internal ulong GateUpProj => Alive()._gateUp.DevicePointer;

    /// <summary>Down projections. // [E,H,I] dtype</summary>
    internal ulong DownProj => Alive()._down.DevicePointer;

    /// <summary>
    /// Weights over device memory that other code allocated and owns (a training framework's parameters, a raw
    /// <c>cuMemAlloc</c>): nothing is copied, the blocks read that memory, and an optimizer updating it in place changes
    /// what the next forward computes. Disposing these weights frees nothing. The dtype is the element type's
    /// (<see cref="BFloat16"/>, <see cref="Half"/>, <see cref="float"/>); the buffers (owning or views from
    /// <see cref="DeviceBuffer{T}.Wrap"/>) must be exactly their shapes and of one <see cref="CudaContext"/>.
    /// </summary>
    /// <param name="config">Layer shape.</param>
    /// <param name="router">gate.weight. // [E,H] dtype</param>
    /// <param name="gateUp">Stacked gate/up projections, per expert gate rows then up rows. // [E,2I,H] dtype</param>
    /// <param name="down">Down projections. // [E,H,I] dtype</param>
    /// <exception cref="ArgumentException">A length that is not the shape's, an element type that is no storage dtype,
    /// buffers of different context objects (named).</exception>
    public static Qwen3MoeDeviceWeights FromDevice<TElem>(MoeConfig config, DeviceBuffer<TElem> router, DeviceBuffer<TElem> gateUp,
        DeviceBuffer<TElem> down) where TElem : unmanaged
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(router);
        ArgumentNullException.ThrowIfNull(gateUp);
        ArgumentNullException.ThrowIfNull(down);
        config.Validate();
        ScalarType dtype = typeof(TElem) == typeof(BFloat16) ? ScalarType.BFloat16 : typeof(TElem) == typeof(Half) ? ScalarType.Float16
            : typeof(TElem) == typeof(float) ? ScalarType.Float32
            : throw new ArgumentException($"DeviceBuffer<{typeof(TElem).Name}> holds no storage dtype; use BFloat16, Half or float.", nameof(router));
        int e = config.NumExperts, h = config.HiddenSize, i = config.IntermediateSize;
        Exact(router.Length, config.GateElements, nameof(router), $"[E={e},H={h}]");
        Exact(gateUp.Length, config.GateUpProjElements, nameof(gateUp), $"[E={e},2I={2 * i},H={h}]");
        Exact(down.Length, config.DownProjElements, nameof(down), $"[E={e},H={h},I={i}]");
        CudaContext context = router.Context;
        context.EnsureSameContext(gateUp.Context, nameof(gateUp), "router");
        context.EnsureSameContext(down.Context, nameof(down), "router");
        return new Qwen3MoeDeviceWeights(context, config, dtype,
            DeviceBuffer<byte>.Wrap(context, router.DevicePointer, router.SizeInBytes),
            DeviceBuffer<byte>.Wrap(context, gateUp.DevicePointer, gateUp.SizeInBytes),
            DeviceBuffer<byte>.Wrap(context, down.DevicePointer, down.SizeInBytes));
    }

    private static void Exact(long actual, long expected, string name, string shape)
    {
        if (actual != expected) throw new ArgumentException($"{name} must be {shape} = {expected} elements, has {actual}.", name);
    }

    /// <summary>A non-owning view of the router weight, for an optimizer to update in place. // [E,H] dtype</summary>
    /// <exception cref="ArgumentException"><typeparamref name="TElem"/> is not the dtype's element type.</exception>
    public DeviceBuffer<TElem> RouterView<TElem>() where TElem : unmanaged => View<TElem>(Alive()._router);

    /// <summary>A non-owning view of the stacked gate/up projections. // [E,2I,H] dtype</summary>
    public DeviceBuffer<TElem> GateUpView<TElem>() where TElem : unmanaged => View<TElem>(Alive()._gateUp);

    /// <summary>A non-owning view of the down projections. // [E,H,I] dtype</summary>
    public DeviceBuffer<TElem> DownView<TElem>() where TElem : unmanaged => View<TElem>(Alive()._down);

    private DeviceBuffer<TElem> View<TElem>(DeviceBuffer<byte> bytes) where TElem : unmanaged
    {
        BlockChecks.ElementType(DType, typeof(TElem), "TElem");
        return DeviceBuffer<TElem>.Wrap(Context, bytes.DevicePointer, bytes.SizeInBytes / DeviceBuffer<TElem>.ElementSize);
    }

    /// <summary>
    /// Uploads <paramref name="weights"/> rounded to <paramref name="dtype"/> (round to nearest even; values already
    /// representable are stored exactly). Synchronous.
    /// </summary>
    /// <exception cref="ArgumentNullException">A null argument.</exception>
    public static Qwen3MoeDeviceWeights Upload(CudaContext context, MoeWeights weights, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(weights);
        _ = dtype.SizeOf(); // validates the enum value
        MoeConfig config = weights.Config.Validate();
        DeviceBuffer<byte>? router = null, gateUp = null, down = null;
        try
        {
            router = DeviceTransfer.UploadNew(context, weights.Gate, dtype);
            gateUp = DeviceTransfer.UploadNew(context, weights.GateUpProj, dtype);
            down = DeviceTransfer.UploadNew(context, weights.DownProj, dtype);
            return new Qwen3MoeDeviceWeights(context, config, dtype, router, gateUp, down);
        }
        catch
        {
            router?.Dispose();
            gateUp?.Dispose();
            down?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads one layer from a safetensors file or checkpoint directory (fused or per-expert Hugging Face names,
    /// optional <c>model.layers.{L}.mlp.</c> prefix; see <see cref="Reference.IO.MoeCheckpointLayout"/>) straight to the
    /// device: memory-mapped bytes through pinned staging in chunks, converted on the GPU when the file's dtype is not
    /// <paramref name="dtype"/>. No host float copy; host memory bounded by the staging (see <see cref="CheckpointLoadOptions"/>).
    /// </summary>
    /// <exception cref="Reference.IO.SafetensorsFormatException">A missing tensor, wrong shape or dtype (named in the message).</exception>
    /// <exception cref="Reference.IO.NonFiniteInputException">With <see cref="CheckpointLoadOptions.RequireFinite"/>: a non-finite weight (named).</exception>
    public static Qwen3MoeDeviceWeights FromSafetensors(CudaContext context, MoeConfig config, string fileOrDirectory,
        ScalarType dtype, int? layer = null, CheckpointLoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(fileOrDirectory);
        using Reference.IO.SafetensorsCollection files = Reference.IO.SafetensorsCollection.Open(fileOrDirectory);
        IReadOnlyList<Reference.IO.MoeTensorPlacement> placements = Reference.IO.MoeCheckpointLayout.Resolve(config, files, layer);
        options ??= new CheckpointLoadOptions();
        using var target = new DeviceStagingTarget(context, options.ChunkBytes, dtype);
        return Stream(context, config, dtype, placements, target, null, options.RequireFinite);
    }

    /// <summary>Allocates one layer's buffers and streams <paramref name="placements"/> into them through <paramref name="target"/>
    /// (complete on return).</summary>
    internal static Qwen3MoeDeviceWeights Stream(CudaContext context, MoeConfig config, ScalarType dtype,
        IReadOnlyList<Reference.IO.MoeTensorPlacement> placements, DeviceStagingTarget target, Action<long>? onBytes, bool requireFinite)
    {
        int s = dtype.SizeOf();
        DeviceBuffer<byte>? router = null, gateUp = null, down = null;
        try
        {
            router = new DeviceBuffer<byte>(context, checked(config.GateElements * s));
            gateUp = new DeviceBuffer<byte>(context, checked(config.GateUpProjElements * s));
            down = new DeviceBuffer<byte>(context, checked(config.DownProjElements * s));
            // NOTE: poisoned first (0xFF = NaN in every dtype; memset at device bandwidth), so a byte the stream
            // missed can never pass for a weight.
            router.FillBytes(0xFF);
            gateUp.FillBytes(0xFF);
            down.FillBytes(0xFF);
            target.SetDestinations(router, gateUp, down); // indexed by MoeWeightPart
            CheckpointStreamer.Run(placements, target, onBytes, requireFinite ? dtype : null);
            return new Qwen3MoeDeviceWeights(context, config.Validate(), dtype, router, gateUp, down);
        }
        catch
        {
            router?.Dispose();
            gateUp?.Dispose();
            down?.Dispose();
            throw;
        }
    }

    /// <summary>Downloads the weights back to the host (values widened exactly to float).</summary>
    public MoeWeights Download()
    {
        Alive();
        var router = new float[Config.GateElements];
        var gateUp = new float[Config.GateUpProjElements];
        var down = new float[Config.DownProjElements];
        DeviceTransfer.Download(_router, 0, router, DType);
        DeviceTransfer.Download(_gateUp, 0, gateUp, DType);
        DeviceTransfer.Download(_down, 0, down, DType);
        return new MoeWeights(Config, router, gateUp, down);
    }

    /// <summary>Router weight with its byte size. // [E,H] dtype</summary>
    internal DeviceRange GateRange => Alive()._router.AsRange();

    /// <summary>Stacked gate/up projections with their byte size. // [E,2I,H] dtype</summary>
    internal DeviceRange GateUpProjRange => Alive()._gateUp.AsRange();

    /// <summary>Down projections with their byte size. // [E,H,I] dtype</summary>
    internal DeviceRange DownProjRange => Alive()._down.AsRange();

    private Qwen3MoeDeviceWeights Alive()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return this;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _router.Dispose();
        _gateUp.Dispose();
        _down.Dispose();
    }
}
