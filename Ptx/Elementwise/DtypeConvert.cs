using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MoeNative.Interop;
using static MoeNative.Interop.DeviceRangeChecks;

namespace MoeNative.Ptx;

/// <summary><c>moe_convert_{src}_to_{dst}</c>: grid-stride, one element per thread per step.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ConvertDtypeArgs
{
    public ulong Source;    // [N] src dtype in
    public ulong Dest;      // [N] dst dtype out (overwritten)
    public long Count;      // N
}

/// <summary>The convert_dtype PTX file, its specialisations (every ordered pair of distinct storage dtypes) and entries.</summary>
internal static class DtypeConvertModules
{
    public const string File = "Elementwise/convert_dtype.ptx";

    public static string Entry(ScalarType from, ScalarType to) => $"moe_convert_{from.ShortName()}_to_{to.ShortName()}";

    /// <summary>The specialisation for <paramref name="from"/> → <paramref name="to"/> (distinct storage dtypes).</summary>
    public static PtxModuleSpec Module(ScalarType from, ScalarType to)
    {
        if (from == to) throw new ArgumentException($"No conversion kernel from {from.ShortName()} to itself: copy instead.", nameof(to));
        IReadOnlyDictionary<string, string> s = PtxDtype.Constants(from), d = PtxDtype.Constants(to);
        var values = new Dictionary<string, string>
        {
            ["SRC"] = s["DTYPE"],
            ["DST"] = d["DTYPE"],
            ["SRC_SREG"] = s["SREG"],
            ["DST_SREG"] = d["SREG"],
            ["SRC_BYTES"] = s["ELEM_BYTES"],
            ["DST_BYTES"] = d["ELEM_BYTES"],
            ["CVT_S2F"] = s["CVT_S2F"],
            // NOTE: the dtype snippets narrow into %cv_s; here the destination register is %cv_d (its own width).
            ["CVT_F2D"] = d["CVT_F2S"].Replace("%cv_s", "%cv_d", StringComparison.Ordinal),
        };
        string text = PtxTemplate.Specialise(PtxLibrary.ReadEmbedded(File), values);
        return new PtxModuleSpec($"Elementwise/convert_dtype.{from.ShortName()}_to_{to.ShortName()}", text,
            [new PtxKernelSpec(Entry(from, to), typeof(ConvertDtypeArgs))]);
    }

    /// <summary>All six specialisations.</summary>
    public static IEnumerable<PtxModuleSpec> All() =>
        from f in PtxDtype.All from t in PtxDtype.All where f != t select Module(f, t);
}

/// <summary>
/// Storage-dtype conversion on the device (<see cref="Convert"/>), one instance per context (<see cref="For"/>),
/// kernels JIT-compiled on first use. Validation before any launch; launches are asynchronous on the given stream.
/// </summary>
internal sealed class DtypeConvertKernels
{
    private const int Block = 256;
    private const int MaxGrid = 8192; // grid-stride beyond: 2M threads in flight cover any GPU

    private static readonly ConditionalWeakTable<CudaContext, DtypeConvertKernels> Instances = new();

    private readonly Lock _gate = new();
    private readonly Dictionary<(ScalarType, ScalarType), PtxKernel<ConvertDtypeArgs>> _kernels = [];

    private DtypeConvertKernels(CudaContext context) => Context = context;

    public CudaContext Context { get; }

    public static DtypeConvertKernels For(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return Instances.GetValue(context, c => new DtypeConvertKernels(c));
    }

    /// <summary>
    /// dst[n] = <paramref name="to"/>(src[n]) for n in [0, <paramref name="count"/>): widening exact, narrowing rounded
    /// to nearest even. Source and destination must not overlap.
    /// </summary>
    /// <exception cref="ArgumentException">The same dtype twice, a null pointer, a range shorter than its count,
    /// overlapping ranges, a stream of another context (names the parameter).</exception>
    public void Convert(CudaStream stream, ScalarType from, ScalarType to,
        DeviceRange source, // [N] from
        DeviceRange dest,   // [N] to, overwritten
        long count)
    {
        ArgumentNullException.ThrowIfNull(stream);
        Context.EnsureSameContext(stream.Context, nameof(stream), "these kernels");
        if (from == to) throw new ArgumentException($"from and to are both {from.ShortName()}: copy instead of converting.", nameof(to));
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        long srcBytes = checked(count * from.SizeOf()), dstBytes = checked(count * to.SizeOf());
        if (count == 0) return;
        Need(source, srcBytes, nameof(source), $"[N={count}] {from.ShortName()}");
        Need(dest, dstBytes, nameof(dest), $"[N={count}] {to.ShortName()}");
        if (source.Pointer < dest.Pointer + (ulong)dstBytes && dest.Pointer < source.Pointer + (ulong)srcBytes)
            throw new ArgumentException($"source {source} and dest {dest} overlap.", nameof(dest));
        var args = new ConvertDtypeArgs { Source = source.Pointer, Dest = dest.Pointer, Count = count };
        uint grid = (uint)Math.Min(MaxGrid, (count + Block - 1) / Block);
        Kernel(from, to).Launch(stream, new Dim3(grid), new Dim3(Block), 0, in args);
    }

    private PtxKernel<ConvertDtypeArgs> Kernel(ScalarType from, ScalarType to)
    {
        lock (_gate)
        {
            if (!_kernels.TryGetValue((from, to), out PtxKernel<ConvertDtypeArgs>? k))
                _kernels[(from, to)] = k = PtxModuleCache.GetKernel<ConvertDtypeArgs>(Context, DtypeConvertModules.Module(from, to), DtypeConvertModules.Entry(from, to));
            return k;
        }
    }

}
