using System.Runtime.CompilerServices;
using MoeNative.Interop;

namespace MoeNative.Ptx;

/// <summary>
/// The small kernels that keep a fused MoE block on the device, one partial file per family beside its PTX:
/// <c>Ptx/Routing/</c> (router softmax/top-k and its backward, router logits GEMV, routing indices) and
/// <c>Ptx/Elementwise/</c> (row gather, SwiGLU forward/backward, top-k combine forward/backward, the dX sum over k).
/// This file holds what they share: the per-context instance, the argument checks and the kernel loading.
/// One instance per <see cref="CudaContext"/> (<see cref="For"/>); each module is JIT-compiled on first use.
/// Every method validates all arguments (dtype, sizes, k &lt;= E, non-negative dims, null pointers and, when a
/// <see cref="DeviceRange"/> knows its size, that it holds the shape) and throws <see cref="ArgumentException"/>
/// naming the parameter and the expected shape before any launch; then it enqueues its launches on the given stream:
/// no synchronisation, no allocation (after the first call per kernel). Empty input returns without launching
/// (except <see cref="RoutingIndices"/>, which still zeroes m_sizes).
/// Legend: T tokens, E experts, k top-k, TK = T*k token slots, H hidden, I intermediate, R rows.
/// p = t*k + j token slot, r expert-ordered row; gather[r] = p, inverse[p] = r. Outputs are overwritten, never accumulated.
/// </summary>
internal sealed partial class MoeKernels
{
    private static readonly ConditionalWeakTable<CudaContext, MoeKernels> Instances = new();

    private readonly Lock _gate = new();

    private MoeKernels(CudaContext context) => Context = context;

    public CudaContext Context { get; }

    /// <summary>The instance for <paramref name="context"/> (created on first call; kernels load lazily).</summary>
    public static MoeKernels For(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return Instances.GetValue(context, c => new MoeKernels(c));
    }

    // ============================================================================================== validation
    private void CheckStream(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        Context.EnsureSameContext(stream.Context, nameof(stream), "these kernels");
    }

    private static int ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 or ScalarType.Float16 => 2,
        ScalarType.Float32 => 4,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Storage dtype must be BFloat16, Float16 or Float32."),
    };

    private static void NonNegative(int value, string name)
    {
        if (value < 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must be >= 0.");
    }

    private static uint CeilDiv(int n, int d) => (uint)((n + d - 1) / d);

    // ============================================================================================== loading
    private static int Slot(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => 0,
        ScalarType.Float16 => 1,
        ScalarType.Float32 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Storage dtype must be BFloat16, Float16 or Float32."),
    };

    private PtxKernel<TArgs> Kernel<TArgs>(PtxKernel<TArgs>?[] cache, ScalarType dtype,
        Func<ScalarType, PtxModuleSpec> module, Func<ScalarType, string> entry) where TArgs : unmanaged =>
        Kernel(cache, Slot(dtype), dtype, module, entry);

    /// <summary>A kernel of a module with several specialisations: <c>cache[slot]</c>, loaded once from
    /// <c>module(key)</c> and <c>entry(key)</c>. Pass static lambdas (no closure: launches stay allocation-free).</summary>
    private PtxKernel<TArgs> Kernel<TArgs, TKey>(PtxKernel<TArgs>?[] cache, int slot, TKey key,
        Func<TKey, PtxModuleSpec> module, Func<TKey, string> entry) where TArgs : unmanaged
    {
        if (Volatile.Read(ref cache[slot]) is { } hit) return hit;
        lock (_gate)
        {
            if (cache[slot] is null) Volatile.Write(ref cache[slot], PtxModuleCache.GetKernel<TArgs>(Context, module(key), entry(key)));
            return cache[slot]!;
        }
    }
}
