using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Blocks;

/// <summary>
/// The fused block's decode regime: the routing in one launch (<c>moe_routing_decode</c>: router GEMV, softmax, top-k,
/// m_sizes, gather, inverse, the four routing kernels' outputs bit for bit) when the block routes itself and T ≤ 16, then
/// two launches replace GEMM1, SwiGLU, GEMM2 and the combine: <c>moe_decode_gate_up_silu</c> (G1 and A of every hit expert's rows) and <c>moe_decode_down_combine</c>
/// (G2, the routing-weight scale, and Y = Σ_j w·U in j order). Every SM streams a slice of each hit expert's weights,
/// so few tokens read the weights once at the card's bandwidth instead of walking a few tall tiles. The workspace gets
/// the same G1, A and G2 (U) as the grouped path writes, so the backward runs unchanged after a decode forward.
/// A token's outputs do not depend on the rest of the batch (fixed-order dot products and sums).
/// </summary>
internal sealed class FusedDecodePath : IDisposable
{
    /// <summary>
    /// Largest T that <see cref="DecodeMode.Auto"/> sends through the decode kernels, for experts of
    /// <paramref name="config"/>'s size: measured, NVIDIA H200, bf16, graph replay (docs/PERF.md, decode session 6).
    /// Experts up to <see cref="SmallExpertElements"/> weights per matrix (Qwen3-30B-A3B: H·I = 2048·768) up to T = 16
    /// (T=16: 0.236 ms against 0.253 for the grouped GEMMs; T=32: 0.329 against 0.319); larger ones up to T = 8
    /// (Qwen3-235B-A22B T=16: 0.820 against 0.804; T=8 0.502 against 0.610 for cuBLAS grouped), where the grouped
    /// GEMMs' tiles already stream near the floor.
    /// </summary>
    public static int AutoMaxTokens(MoeConfig config) =>
        (long)config.HiddenSize * config.IntermediateSize <= SmallExpertElements ? AutoMaxTokensSmallExperts : AutoMaxTokensLargeExperts;

    /// <summary>H·I of the largest experts that take the decode kernels up to <see cref="AutoMaxTokensSmallExperts"/>.</summary>
    public const long SmallExpertElements = 2048L * 768;

    /// <summary><see cref="AutoMaxTokens"/> for experts of at most <see cref="SmallExpertElements"/> weights per matrix.</summary>
    public const int AutoMaxTokensSmallExperts = 16;

    /// <summary><see cref="AutoMaxTokens"/> for larger experts.</summary>
    public const int AutoMaxTokensLargeExperts = 8;

    private readonly CudaContext _context;
    private readonly MoeConfig _config;
    private readonly ScalarType _dtype;
    private readonly FusedBlockOptions _options;
    private DeviceBuffer<uint>? _counters; // [H/8] u32 tickets of moe_decode_down_combine: 0 between launches
    private DeviceBuffer<uint>? _routeCounter; // [RoutingDecodeCounters(16)] u32 tickets of moe_routing_decode: 0 between launches
    private DeviceBuffer<uint>? _routeRecord; // [DecodeRouteRecordBytes / 4] u32 route record of a T = 1 step: 0 between steps
    private readonly DecodeTuningOverride _tuningOverride; // MOENATIVE_DECODE_TUNING as read at construction

    /// <exception cref="ArgumentException"><see cref="DecodeMode.Always"/> for a config the decode kernels cannot run.</exception>
    /// <exception cref="FormatException">MOENATIVE_DECODE_TUNING is set and does not parse (<see cref="DecodeTuningOverride.Parse"/>).</exception>
    public FusedDecodePath(CudaContext context, MoeConfig config, ScalarType dtype, FusedBlockOptions options)
    {
        _context = context;
        _config = config;
        _dtype = dtype;
        _options = options;
        Supported = MoeKernels.CanDecode(dtype, config.NumExperts, config.HiddenSize, config.IntermediateSize);
        Programmatic = context.ComputeCapability.Major >= 9 && ProgrammaticByEnvironment;
        _tuningOverride = DecodeTuningOverride.FromEnvironment(); // a bad override fails here, before any launch
        if (options.Decode == DecodeMode.Always && !Supported)
            throw new ArgumentException(
                $"Decode = Always needs a bf16/fp16 block with E <= {MoeKernels.DecodeMaxExperts} and H, I multiples of 8; " +
                $"this block is {dtype.ShortName()}, E={config.NumExperts}, H={config.HiddenSize}, I={config.IntermediateSize}.", "options");
    }

    /// <summary>Whether the config and dtype allow the decode kernels at all.</summary>
    public bool Supported { get; }

    /// <summary>
    /// Whether the decode step runs with programmatic dependent launch: compute capability 9.0+ unless
    /// MOENATIVE_DECODE_PDL=0. The decode gate/up kernel then starts while the one-launch routing ends, the down kernel
    /// while the gate/up kernel ends (each waits on the device: griddepcontrol); the values are the same either way
    /// (DecodeProgrammaticLaunchTests). On by default: 1-4 us faster at T = 1..8 on an H200 (docs/PERF.md, v12).
    /// </summary>
    public bool Programmatic { get; }

    /// <summary>MOENATIVE_DECODE_PDL is not "0": the sm_90 specialisations with programmatic launch where the card has them.</summary>
    public static bool ProgrammaticByEnvironment => Environment.GetEnvironmentVariable("MOENATIVE_DECODE_PDL") != "0";

    /// <summary>
    /// Whether a decode step of <paramref name="tokens"/> tokens that routes itself in one launch hands its experts to
    /// the decode kernels through a route record (<see cref="MoeKernels.CanRouteRecord"/>: T = 1, k &lt;= 32; with
    /// <see cref="Programmatic"/>, where the gate/up kernel is resident while the routing kernel ends; unless
    /// MOENATIVE_DECODE_RECORD=0): the gate/up kernel starts streaming right after the routing's top-k instead of after
    /// its indices and its grid's end. The values are the same either way
    /// (DecodeProgrammaticLaunchTests.RouteRecordStep_IsBitwiseThePlainStep).
    /// </summary>
    public bool UsesRouteRecord(int tokens) => Programmatic && RouteRecordByEnvironment && MoeKernels.CanRouteRecord(tokens, _config.TopK);

    /// <summary>MOENATIVE_DECODE_RECORD is not "0" (for A/B measurements).</summary>
    public static bool RouteRecordByEnvironment => Environment.GetEnvironmentVariable("MOENATIVE_DECODE_RECORD") != "0";

    /// <summary>Whether a forward of <paramref name="tokens"/> tokens on <paramref name="x"/> runs the decode kernels.</summary>
    /// <exception cref="ArgumentException"><see cref="DecodeMode.Always"/> and an X that is not 16-byte aligned.</exception>
    public bool Applies(int tokens, DeviceRange x)
    {
        switch (_options.Decode)
        {
            case DecodeMode.Off:
                return false;
            case DecodeMode.Always:
                if (!MoeKernels.DecodeAligned(x))
                    throw new ArgumentException("Decode = Always needs X 16-byte aligned (the decode kernels load 16-byte row chunks).", nameof(x));
                return true;
            default:
                return Supported && tokens <= AutoMaxTokens(_config) && MoeKernels.DecodeAligned(x);
        }
    }

    /// <summary>Allocates and zeroes the ticket counters and the route record (synchronous; before any graph capture).</summary>
    public void Reserve()
    {
        if (_counters is not null) return;
        var routeCounter = new DeviceBuffer<uint>(_context, MoeKernels.RoutingDecodeCounters(MoeKernels.RoutingDecodeMaxTokens));
        routeCounter.FillBytes(0);
        var routeRecord = new DeviceBuffer<uint>(_context, MoeKernels.DecodeRouteRecordBytes / 4);
        routeRecord.FillBytes(0);
        var counters = new DeviceBuffer<uint>(_context, MoeKernels.DecodeCounterCount(_config.HiddenSize));
        counters.FillBytes(0);
        _routeCounter = routeCounter;
        _routeRecord = routeRecord;
        _counters = counters;
    }

    /// <summary>The route record for a step of <paramref name="tokens"/> tokens routed in one launch (<see cref="UsesRouteRecord"/>), else Null.</summary>
    private DeviceRange RouteRecord(int tokens, bool routedInOneLaunch) =>
        routedInOneLaunch && UsesRouteRecord(tokens) ? _routeRecord!.AsRange() : DeviceRange.Null;

    /// <summary>Whether a decode forward (<see cref="Applies"/>) that routes itself takes the one-launch routing.</summary>
    public bool RoutesInOneLaunch(int tokens, DeviceRange x, DeviceRange wr, DeviceRange logits) =>
        MoeKernels.CanRoutingDecode(_dtype, tokens, _config.NumExperts, _config.HiddenSize, x, wr, logits);

    /// <summary>
    /// Router logits, softmax, top-k, renorm, m_sizes, gather and inverse in one launch on <paramref name="s"/> (the
    /// outputs of the four routing kernels, bit for bit). Only where <see cref="Applies"/> and
    /// <see cref="RoutesInOneLaunch"/> hold.
    /// </summary>
    public void Route(MoeKernels kernels, CudaStream s,
        DeviceRange x,       // [T,H] dtype
        DeviceRange wr,      // [E,H] dtype
        DeviceRange logits,  // [T,E] dtype out
        DeviceRange probs,   // [T,E] f32 out
        DeviceRange sel,     // [T,k] i32 out
        DeviceRange w,       // [T,k] dtype out
        DeviceRange mSizes,  // [E] i32 out
        DeviceRange gather,  // [TK] i32 out
        DeviceRange inverse, // [TK] i32 out
        int tokens)
    {
        MoeConfig c = _config;
        // NOTE: the counter exists here: Applies is true only when the block reserves it with its forward workspace.
        kernels.RoutingDecode(s, _dtype, x, wr, logits, probs, sel, w, mSizes, gather, inverse, _routeCounter!.AsRange(),
            tokens, c.NumExperts, c.TopK, c.HiddenSize, c.NormTopKProb, Programmatic, RouteRecord(tokens, routedInOneLaunch: true));
    }

    /// <summary>The step's cut at T = <paramref name="tokens"/>: <see cref="DecodeTuning.For"/> (the L2 fill of the down
    /// weights up to <see cref="DecodeTuning.MaxFillTokens"/>), with what MOENATIVE_DECODE_TUNING names replaced (for
    /// measurements).</summary>
    public DecodeTuning Tuning(int tokens) => _tuningOverride.Apply(DecodeTuning.For(tokens, _config.HiddenSize));

    /// <summary>
    /// GEMM1 + SwiGLU, then GEMM2 + scale + combine on <paramref name="s"/>, from the routing kernels' outputs. With
    /// FuseMulPost G2 rows are scaled by w and summed with weight 1; with PermuteY G2 is stored in token-slot order.
    /// <paramref name="routedInOneLaunch"/>: the routing was <see cref="Route"/> just before on the same stream (then a
    /// T = 1 step takes its experts from the route record that launch published, <see cref="UsesRouteRecord"/>).
    /// </summary>
    public void Forward(MoeKernels kernels, CudaStream s,
        DeviceRange x,       // [T,H] dtype
        DeviceRange gateUp,  // Wgu [E,2I,H] dtype
        DeviceRange down,    // Wd [E,H,I] dtype
        DeviceRange mSizes,  // [E] i32
        DeviceRange gather,  // [TK] i32
        DeviceRange inverse, // [TK] i32
        DeviceRange w,       // [T,k] dtype routing weights
        DeviceRange g1,      // [TK,2I] dtype out, expert order
        DeviceRange act,     // [TK,I] dtype out, expert order
        DeviceRange g2,      // [TK,H] dtype out (U): expert order, token-slot order with PermuteY
        DeviceRange y,       // [T,H] dtype out
        int tokens, bool routedInOneLaunch)
    {
        MoeConfig c = _config;
        DecodeTuning tuning = Tuning(tokens);
        DeviceRange record = RouteRecord(tokens, routedInOneLaunch);
        // NOTE: the counters exist here: Applies is true only when the block reserves them with its forward workspace.
        kernels.DecodeGateUpSilu(s, _dtype, x, gateUp, down, mSizes, gather, g1, act, tokens, c.NumExperts, c.TopK, c.HiddenSize,
            c.IntermediateSize, Programmatic, tuning, record);
        DeviceRange rowScale = _options.FuseMulPost ? w : DeviceRange.Null;
        DeviceRange combineWeights = _options.FuseMulPost ? DeviceRange.Null : w;
        kernels.DecodeDownCombine(s, _dtype, act, down, mSizes, gather, inverse, rowScale, g2, combineWeights, y,
            _counters!.AsRange(), tokens, c.NumExperts, c.TopK, c.HiddenSize, c.IntermediateSize, slotOrder: _options.PermuteY,
            Programmatic, tuning, record);
    }

    public void Dispose()
    {
        _counters?.Dispose();
        _routeCounter?.Dispose();
        _routeRecord?.Dispose();
    }
}
