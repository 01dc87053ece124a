using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Blocks;

/// <summary>
/// Shape and dtype checks of the fused block's entry points, run before any launch. Separate from the block so
/// that they are testable without a GPU. Every failure is an <see cref="ArgumentException"/> naming the parameter,
/// the expected shape and what was passed.
/// </summary>
internal static class BlockChecks
{
    /// <summary>The element type of a device buffer must be the one that stores <paramref name="dtype"/>.</summary>
    public static void ElementType(ScalarType dtype, Type elementType, string paramName)
    {
        Type expected = StorageConvert.ElementType(dtype);
        if (elementType != expected)
            throw new ArgumentException(
                $"The block stores {dtype.ShortName()}: pass DeviceBuffer<{expected.Name}>, got DeviceBuffer<{elementType.Name}>.", paramName);
    }

    /// <summary>A buffer must hold at least the elements of its shape.</summary>
    /// <param name="actual">Elements the buffer has.</param>
    /// <param name="required">Elements the shape needs.</param>
    /// <param name="paramName">The parameter.</param>
    /// <param name="shape">The shape (an interpolated string formatted only when the check fails: no allocation otherwise).</param>
    public static void Length(long actual, long required, string paramName,
        [System.Runtime.CompilerServices.InterpolatedStringHandlerArgument(nameof(actual), nameof(required))] ref CheckMessage shape)
    {
        if (actual < required)
            throw new ArgumentException($"{paramName} must hold {shape.ToStringAndClear()} = {required} elements, has {actual}.", paramName);
    }

    /// <summary>Every check of a device block's forward, in order: stream, x, y and (when given) routing's buffers not
    /// null; the element type; the shapes; the contexts; x and y distinct.</summary>
    public static void Forward<TElem>(CudaContext context, MoeConfig config, ScalarType dtype, CudaStream stream,
        DeviceBuffer<TElem> x, DeviceBuffer<TElem> y, int tokens, DeviceRouting<TElem>? routing) where TElem : unmanaged
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (routing is not null)
        {
            ArgumentNullException.ThrowIfNull(routing.Selected, nameof(routing));
            ArgumentNullException.ThrowIfNull(routing.Weights, nameof(routing));
        }
        ElementType(dtype, typeof(TElem), nameof(x));
        ForwardShapes(config, dtype, tokens, x.Length, y.Length, routing?.Selected.Length, routing?.Weights.Length);
        ForwardContexts(context, stream, x, y, routing);
        if (ReferenceEquals(x, y) || (tokens > 0 && x.DevicePointer == y.DevicePointer))
            throw new ArgumentException("x and y must be different buffers.", nameof(y));
    }

    /// <summary>Backward arguments of a device block: stream, dY and the four gradient buffers are not null.</summary>
    public static void BackwardArguments<TElem>(CudaStream stream, DeviceBuffer<TElem> dY, DeviceGradients<TElem> gradients)
        where TElem : unmanaged
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(dY);
        ArgumentNullException.ThrowIfNull(gradients);
        ArgumentNullException.ThrowIfNull(gradients.HiddenStates, nameof(gradients));
        ArgumentNullException.ThrowIfNull(gradients.Gate, nameof(gradients));
        ArgumentNullException.ThrowIfNull(gradients.GateUpProj, nameof(gradients));
        ArgumentNullException.ThrowIfNull(gradients.DownProj, nameof(gradients));
    }

    /// <summary>Forward: x and y [T,H]; routing (when given) Selected [T,k] and Weights [T,k].</summary>
    public static void ForwardShapes(MoeConfig c, ScalarType dtype, int tokens, long xLength, long yLength,
        long? selectedLength, long? weightsLength)
    {
        MoeLimits.CheckDeviceTokens(c, tokens, nameof(tokens));
        long th = (long)tokens * c.HiddenSize, tk = (long)tokens * c.TopK;
        Length(xLength, th, "x", $"[T={tokens},H={c.HiddenSize}]");
        Length(yLength, th, "y", $"[T={tokens},H={c.HiddenSize}]");
        if (selectedLength is { } sel)
            Length(sel, tk, "routing", $"Selected [T={tokens},k={c.TopK}] i32");
        if (weightsLength is { } w)
            Length(w, tk, "routing", $"Weights [T={tokens},k={c.TopK}] {dtype.ShortName()}");
    }

    /// <summary>Backward: dY and dX [T,H] (T of the last forward); dRouter [E,H]; dGateUp [E,2I,H]; dDown [E,H,I].</summary>
    public static void BackwardShapes(MoeConfig c, int tokens, long dYLength, long dXLength, long routerLength,
        long gateUpLength, long downLength)
    {
        long th = (long)tokens * c.HiddenSize;
        Length(dYLength, th, "dY", $"[T={tokens},H={c.HiddenSize}] (T of the last forward)");
        Length(dXLength, th, "gradients.HiddenStates", $"[T={tokens},H={c.HiddenSize}]");
        Length(routerLength, c.GateElements, "gradients.Gate", $"[E={c.NumExperts},H={c.HiddenSize}]");
        Length(gateUpLength, c.GateUpProjElements, "gradients.GateUpProj", $"[E={c.NumExperts},2I={2 * c.IntermediateSize},H={c.HiddenSize}]");
        Length(downLength, c.DownProjElements, "gradients.DownProj", $"[E={c.NumExperts},H={c.HiddenSize},I={c.IntermediateSize}]");
    }

    /// <summary>The stream and every buffer of a forward belong to the block's CudaContext object (the Interop rule,
    /// <see cref="CudaContext.EnsureSameContext"/>): checked before any launch.</summary>
    public static void ForwardContexts<TElem>(CudaContext block, CudaStream stream, DeviceBuffer<TElem> x, DeviceBuffer<TElem> y,
        DeviceRouting<TElem>? routing) where TElem : unmanaged
    {
        block.EnsureSameContext(stream.Context, nameof(stream), "the block");
        block.EnsureSameContext(x.Context, nameof(x), "the block");
        block.EnsureSameContext(y.Context, nameof(y), "the block");
        if (routing is null) return;
        block.EnsureSameContext(routing.Selected.Context, nameof(routing), "the block");
        block.EnsureSameContext(routing.Weights.Context, nameof(routing), "the block");
    }

    /// <summary>The stream and every buffer of a backward belong to the block's CudaContext object.</summary>
    public static void BackwardContexts<TElem>(CudaContext block, CudaStream stream, DeviceBuffer<TElem> dY, DeviceGradients<TElem> gradients)
        where TElem : unmanaged
    {
        block.EnsureSameContext(stream.Context, nameof(stream), "the block");
        block.EnsureSameContext(dY.Context, nameof(dY), "the block");
        block.EnsureSameContext(gradients.HiddenStates.Context, "gradients.HiddenStates", "the block");
        block.EnsureSameContext(gradients.Gate.Context, "gradients.Gate", "the block");
        block.EnsureSameContext(gradients.GateUpProj.Context, "gradients.GateUpProj", "the block");
        block.EnsureSameContext(gradients.DownProj.Context, "gradients.DownProj", "the block");
    }
}
