using System.Runtime.InteropServices;
using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Blocks;

// The host API of the fused block (IMoeHostBlock): host arrays staged through device buffers on the block's own stream.
public sealed partial class Qwen3MoeFusedBlock
{
    /// <summary><see cref="IMoeHostBlock"/>: T = x.Length / H, every intermediate returned.</summary>
    MoeIntermediates IMoeHostBlock.Forward(float[] x, MoeRouting? routing) => Forward(x, routing, intermediates: true);

    // ==== host API ==================================================================================================

    /// <summary>
    /// Host forward of T = <paramref name="hiddenStates"/>.Length / H tokens, inferred as the references infer it;
    /// otherwise <see cref="Forward(float[], int, MoeRouting?, bool)"/>.
    /// </summary>
    /// <exception cref="ArgumentException">hiddenStates is not a whole number of rows of H; routing invalid.</exception>
    public MoeIntermediates Forward(float[] hiddenStates /*[T,H]*/, MoeRouting? routing = null, bool intermediates = false)
    {
        ArgumentNullException.ThrowIfNull(hiddenStates);
        int h = Config.HiddenSize;
        if (hiddenStates.LongLength % h != 0)
            throw new ArgumentException($"hiddenStates must be [T,H={h}]: {hiddenStates.LongLength} elements is not a whole number of rows.", nameof(hiddenStates));
        long tokens = hiddenStates.LongLength / h;
        if (tokens > int.MaxValue)
            throw new ArgumentException($"hiddenStates holds {tokens} rows; at most {int.MaxValue} tokens.", nameof(hiddenStates));
        return Forward(hiddenStates, (int)tokens, routing, intermediates);
    }

    /// <summary>
    /// Host convenience forward: uploads <paramref name="x"/> (rounded to the dtype), runs <see cref="Forward{TElem}"/>
    /// on the block's own stream, waits, and returns the output and router logits — and every intermediate when
    /// <paramref name="intermediates"/> is true (otherwise those arrays are empty). With <paramref name="routing"/>,
    /// its experts/weights (weights rounded to the dtype) replace the router's top-k.
    /// </summary>
    /// <exception cref="ArgumentException">x not [T,H], routing invalid for the config or T.</exception>
    public MoeIntermediates Forward(float[] x /*[T,H]*/, int tokens, MoeRouting? routing = null, bool intermediates = false)
    {
        ThrowIfDisposed();
        using BlockEntryGuard.Scope entry = _entry.Enter(this);
        ArgumentNullException.ThrowIfNull(x);
        MoeConfig c = Config;
        MoeLimits.CheckDeviceTokens(c, tokens, nameof(tokens));
        if (intermediates) MoeLimits.CheckReferenceTokens(c, tokens, nameof(tokens)); // [T*k,2I] host arrays
        if (x.LongLength != (long)tokens * c.HiddenSize)
            throw new ArgumentException($"x must be [T={tokens},H={c.HiddenSize}] = {(long)tokens * c.HiddenSize} elements, got {x.LongLength}.", nameof(x));
        routing?.Validate(c, tokens, nameof(routing));
        CudaStream stream = HostStream();
        int tk = tokens * c.TopK;
        if (tokens == 0)
        {
            _saved = new SavedForward(0, DeviceRange.Null, DeviceRange.Null, DeviceRange.Null, true);
            return HostResults.Empty(c, DType);
        }

        HostIo io = EnsureHostIo(tokens);
        DeviceTransfer.Upload(io.X, 0, x, DType);
        DeviceRange selIn = DeviceRange.Null, wIn = DeviceRange.Null;
        if (routing is not null)
        {
            DeviceTransfer.UploadInt32(io.Selected, 0, routing.Selected);
            DeviceTransfer.Upload(io.RoutingWeights, 0, routing.Weights, DType);
            selIn = io.Selected.AsRange();
            wIn = io.RoutingWeights.AsRange();
        }
        io.Y.FillBytes(0xFF, stream); // poison: an unwritten element reads back as NaN
        if (intermediates) EnsureForwardWorkspace(tokens).Poison(stream); // unwritten intermediates read back as NaN / -1
        ForwardCore(stream, io.X.AsRange(), io.Y.AsRange(), tokens, selIn, wIn);
        stream.Synchronize();
        return HostResults.ReadForward(this, io, _forwardWorkspace!, tokens, tk, routing, intermediates);
    }

    /// <summary>
    /// Host convenience backward of the last host <see cref="Forward(float[], int, MoeRouting?, bool)"/>: uploads
    /// <paramref name="dY"/>, runs <see cref="Backward{TElem}"/>, waits, returns the five gradients.
    /// </summary>
    /// <exception cref="InvalidOperationException">FuseMulPost, or no host forward before.</exception>
    /// <exception cref="ArgumentException">dY not [T,H] for the T of the last forward.</exception>
    public MoeGradients Backward(float[] dY /*[T,H]*/)
    {
        ThrowIfDisposed();
        using BlockEntryGuard.Scope entry = _entry.Enter(this);
        ThrowIfInferenceOnly();
        ArgumentNullException.ThrowIfNull(dY);
        if (!_saved.Valid || (_saved.Tokens > 0 && (_hostIo is null || _saved.X.Pointer != _hostIo.X.DevicePointer)))
            throw new InvalidOperationException("The host Backward needs a preceding host Forward on this block.");
        int tokens = _saved.Tokens;
        MoeConfig c = Config;
        if (dY.LongLength != (long)tokens * c.HiddenSize)
            throw new ArgumentException($"dY must be [T={tokens},H={c.HiddenSize}] = {(long)tokens * c.HiddenSize} elements (T of the last forward), got {dY.LongLength}.", nameof(dY));
        if (tokens == 0)
            return new MoeGradients(c, [], new float[c.GateElements], new float[c.GateUpProjElements], new float[c.DownProjElements]);
        CudaStream stream = HostStream();
        HostIo io = _hostIo!;
        HostGradients g = io.EnsureGradients(Context, c, DType);
        DeviceTransfer.Upload(io.DY, 0, dY, DType);
        io.DX.FillBytes(0xFF, stream);
        g.Poison(stream);
        BackwardCore(stream, io.DY.AsRange(), io.DX.AsRange(), g.Gate.AsRange(), g.GateUpProj.AsRange(), g.DownProj.AsRange());
        stream.Synchronize();
        return new MoeGradients(c,
            DeviceTransfer.Download(io.DX, 0, (long)tokens * c.HiddenSize, DType),
            DeviceTransfer.Download(g.Gate, 0, c.GateElements, DType),
            DeviceTransfer.Download(g.GateUpProj, 0, c.GateUpProjElements, DType),
            DeviceTransfer.Download(g.DownProj, 0, c.DownProjElements, DType));
    }

    private HostIo EnsureHostIo(int tokens)
    {
        if (_hostIo is { } io && io.CapacityTokens >= tokens) return io;
        _hostIo?.Dispose();
        _hostIo = null;
        _hostIo = new HostIo(Context, Config, DType, BlockWorkspaceLayout.ShapeClassTokens(tokens));
        return _hostIo;
    }

    private CudaStream HostStream() => _hostStream ??= new CudaStream(Context);

    // ==== host API staging ==========================================================================================

    /// <summary>Device staging buffers of the host API (capacity in tokens, grow-only).</summary>
    internal sealed class HostIo : IDisposable
    {
        public HostIo(CudaContext context, MoeConfig c, ScalarType dt, int capacity)
        {
            CapacityTokens = capacity;
            int s = dt.SizeOf();
            long th = (long)capacity * c.HiddenSize, tk = (long)capacity * c.TopK;
            X = new DeviceBuffer<byte>(context, th * s);
            Y = new DeviceBuffer<byte>(context, th * s);
            DY = new DeviceBuffer<byte>(context, th * s);
            DX = new DeviceBuffer<byte>(context, th * s);
            Selected = new DeviceBuffer<byte>(context, tk * 4);
            RoutingWeights = new DeviceBuffer<byte>(context, tk * s);
        }

        public int CapacityTokens { get; }
        public DeviceBuffer<byte> X { get; }              // [T,H] dtype
        public DeviceBuffer<byte> Y { get; }              // [T,H] dtype
        public DeviceBuffer<byte> DY { get; }             // [T,H] dtype
        public DeviceBuffer<byte> DX { get; }             // [T,H] dtype
        public DeviceBuffer<byte> Selected { get; }       // [T,k] i32
        public DeviceBuffer<byte> RoutingWeights { get; } // [T,k] dtype
        public HostGradients? Gradients { get; private set; }

        public HostGradients EnsureGradients(CudaContext context, MoeConfig c, ScalarType dt)
            => Gradients ??= new HostGradients(context, c, dt);

        public void Dispose()
        {
            X.Dispose();
            Y.Dispose();
            DY.Dispose();
            DX.Dispose();
            Selected.Dispose();
            RoutingWeights.Dispose();
            Gradients?.Dispose();
        }
    }

    /// <summary>Device weight-gradient buffers of the host API.</summary>
    internal sealed class HostGradients : IDisposable
    {
        public HostGradients(CudaContext context, MoeConfig c, ScalarType dt)
        {
            int s = dt.SizeOf();
            Gate = new DeviceBuffer<byte>(context, c.GateElements * s);
            GateUpProj = new DeviceBuffer<byte>(context, c.GateUpProjElements * s);
            DownProj = new DeviceBuffer<byte>(context, c.DownProjElements * s);
        }

        public DeviceBuffer<byte> Gate { get; }  // [E,H] dtype
        public DeviceBuffer<byte> GateUpProj { get; }  // [E,2I,H] dtype
        public DeviceBuffer<byte> DownProj { get; }    // [E,H,I] dtype

        public void Poison(CudaStream s)
        {
            Gate.FillBytes(0xFF, s);
            GateUpProj.FillBytes(0xFF, s);
            DownProj.FillBytes(0xFF, s);
        }

        public void Dispose()
        {
            Gate.Dispose();
            GateUpProj.Dispose();
            DownProj.Dispose();
        }
    }
}
