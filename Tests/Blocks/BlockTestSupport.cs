using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;
using MoeNative.Tests.Support;

namespace MoeNative.Tests.Blocks;

/// <summary>
/// Shared state of the block tests: one random model per (config, dtype), one upload of it at a time, one reference
/// run per (config, dtype, T, implementation) at a time. Data rows are ordered (config, dtype, T, options) so that
/// consecutive rows hit these caches. Not thread-safe: the block test classes are [DoNotParallelize].
/// </summary>
internal static class BlockTestModels
{
    /// <summary>Qwen3-30B-A3B dims, a small top-4 config and a small top-1 config.</summary>
    public static readonly string[] Configs = ["small-k1", "small", "qwen3-30b-a3b"];
    public static readonly ScalarType[] DTypes = [ScalarType.BFloat16, ScalarType.Float16, ScalarType.Float32];
    public static readonly int[] TokenCounts = [1, 7, 128, 1024];

    /// <summary>The valid (permute_x, permute_y) pairs.</summary>
    public static readonly (bool X, bool Y)[] Permutes = [(false, false), (true, false), (false, true)];

    private const int WeightSeed = 20261126;

    private static readonly ConcurrentDictionary<(string, ScalarType), MoeWeights> s_weights = new();
    private static (string Config, ScalarType DType)? s_deviceKey;
    private static Qwen3MoeDeviceWeights? s_device;
    private static CublasGemm? s_cublas;
    private static readonly Dictionary<string, (RefKey Key, ReferenceRun Run)> s_runs = new();

    /// <summary>Large configs run the reference legs on cuBLAS (the host loop is too slow at Qwen3 dims).</summary>
    public static bool IsLarge(string config) => config.StartsWith("qwen3", StringComparison.Ordinal);

    public static MoeConfig Config(string name) => MoeConfig.Preset(name);

    /// <summary>Random weights, representable in <paramref name="dtype"/>, kept for the whole test run.</summary>
    public static MoeWeights Weights(string config, ScalarType dtype) =>
        s_weights.GetOrAdd((config, dtype), key => MoeWeights.Random(Config(key.Item1), WeightSeed + (int)key.Item2, key.Item2));

    /// <summary>The uploaded weights of (config, dtype); the previous upload is freed when the key changes.</summary>
    public static Qwen3MoeDeviceWeights DeviceWeights(CudaContext context, string config, ScalarType dtype)
    {
        if (s_device is not null && s_deviceKey == (config, dtype)) return s_device;
        s_device?.Dispose();
        s_device = null;
        s_device = Qwen3MoeDeviceWeights.Upload(context, Weights(config, dtype), dtype);
        s_deviceKey = (config, dtype);
        return s_device;
    }

    /// <summary>GEMM backend of the reference legs: cuBLAS at large dims, the host otherwise.</summary>
    public static IGemmBackend ReferenceGemm(CudaContext context, string config) =>
        IsLarge(config) ? (s_cublas ??= new CublasGemm(context)) : HostGemm.Instance;

    /// <summary>The input seed of one case: stable across processes (<see cref="TestSeeds.Stable"/>), printed by every failure.</summary>
    public static int InputSeed(string config, ScalarType dtype, int tokens) => TestSeeds.Stable("block-inputs", config, dtype.ShortName(), tokens);

    /// <summary>Fresh random X and dY of one case (seeded by config, dtype and T: <see cref="InputSeed"/>).</summary>
    public static (float[] X, float[] DY) Inputs(string config, ScalarType dtype, int tokens)
    {
        MoeConfig c = Config(config);
        int seed = InputSeed(config, dtype, tokens);
        long n = (long)tokens * c.HiddenSize;
        return (TensorRandom.Normal(n, seed, 1f, dtype), TensorRandom.Normal(n, seed ^ 0x5A5A5A, 1f, dtype));
    }

    /// <summary>
    /// Forward (own routing, or <paramref name="routing"/> when given) and backward of reference
    /// <paramref name="implementation"/> ("hf" on the host/cuBLAS, "grouped" on cuBLAS), cached for the last key.
    /// </summary>
    public static ReferenceRun Reference(CudaContext context, string implementation, string config, ScalarType dtype, int tokens,
        MoeRouting? routing = null, string routingTag = "own", bool backward = true)
    {
        var key = new RefKey(config, dtype, tokens, routingTag);
        if (s_runs.TryGetValue(implementation, out var hit) && hit.Key == key && (hit.Run.Gradients is not null || !backward)) return hit.Run;
        s_runs.Remove(implementation);
        (float[] x, float[] dY) = Inputs(config, dtype, tokens);
        // The grouped leg is always on cuBLAS ("grouped reference on cuBLAS"); the HF leg on the host at small dims.
        IGemmBackend gemm = implementation == "grouped" ? (s_cublas ??= new CublasGemm(context)) : ReferenceGemm(context, config);
        MoeReference reference = MoeReference.Create(implementation, Weights(config, dtype), dtype, gemm);
        MoeIntermediates forward = reference.Forward(x, routing);
        MoeGradients? gradients = backward ? reference.Backward(dY) : null;
        var run = new ReferenceRun(x, dY, forward, gradients, InputSeed(config, dtype, tokens), WeightSeed + (int)dtype);
        s_runs[implementation] = (key, run);
        return run;
    }

    private readonly record struct RefKey(string Config, ScalarType DType, int Tokens, string RoutingTag);
}

/// <summary>One reference forward + backward, with the seeds of its inputs and weights.</summary>
internal sealed record ReferenceRun(float[] X, float[] DY, MoeIntermediates Forward, MoeGradients? Gradients, int InputSeed, int WeightSeed)
{
    /// <summary>"input seed N, weight seed M", for failure messages.</summary>
    public string Seeds => $"input seed {InputSeed}, weight seed {WeightSeed}";

    /// <summary>The gradients (the run must have been made with backward).</summary>
    public MoeGradients Grads => Gradients ?? throw new InvalidOperationException("This reference run has no backward.");
}

/// <summary>
/// Collects every comparison of one test row and fails once at the end with all failing ones, so that one bad
/// intermediate never hides another. Tolerances: <see cref="Numerics.CompareScaled"/> at <see cref="Tolerance.For"/> (atol scaled by the tensor's magnitude, rtol), the same
/// bound on the relative norm, and no NaN.
/// </summary>
internal sealed class ComparisonLog
{
    private readonly List<string> _failures = [];
    private readonly List<string> _passes = [];
    private readonly double _tolerance;

    private readonly ScalarType _dtype;

    public ComparisonLog(ScalarType dtype)
    {
        _dtype = dtype;
        _tolerance = Support.Tolerance.For(dtype);
    }

    public double Tolerance => _tolerance;

    /// <summary>The router gradient dWr [E,H]: <see cref="TensorComparison.ScaledWithFloor"/> with the first-order
    /// scale of the dot products it is a difference of (<see cref="RouterGradientScale"/>, from the expected side).</summary>
    public void CloseRouterGradient(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, ReadOnlySpan<float> scale)
    {
        if (actual.Length != expected.Length)
        {
            _failures.Add($"{name}: length {actual.Length}, expected {expected.Length}");
            return;
        }
        Record(TensorComparison.ScaledWithFloor(name, actual, expected, _tolerance, scale));
    }

    /// <summary>Element-wise allclose + relative norm + no NaN.</summary>
    public void Close(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        if (actual.Length != expected.Length)
        {
            _failures.Add($"{name}: length {actual.Length}, expected {expected.Length}");
            return;
        }
        Comparison c = Numerics.CompareScaled(name, actual, expected, _tolerance);
        Record(c);
    }

    /// <summary>
    /// <see cref="Close"/> for the HF loop's output, which sums the k expert outputs into a storage-dtype buffer
    /// (<c>index_add_</c>): the tolerance of <see cref="TensorTolerance.ForHfAccumulatedOutput"/> (2k roundings where the
    /// grouped and fused paths round once in fp32).
    /// </summary>
    public void CloseHfAccumulated(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, int topK)
    {
        double widened = TensorTolerance.ForHfAccumulatedOutput(_dtype, topK);
        Comparison c = Numerics.CompareScaled(name, actual, expected, widened); // also bounds the relative norm
        (c.AllClose ? _passes : _failures).Add(c.ToString());
    }

    /// <summary>
    /// Per-expert slices of a [E, rows, cols] tensor, compared in parallel; one line per failing expert (the first
    /// few), plus a whole-tensor line.
    /// </summary>
    public void ClosePerExpert(string name, float[] actual, float[] expected, int experts, long sliceElements, long sliceOffset = 0,
        long stride = -1)
    {
        if (stride < 0) stride = sliceElements;
        if (actual.LongLength != expected.LongLength)
        {
            _failures.Add($"{name}: length {actual.LongLength}, expected {expected.LongLength}");
            return;
        }
        var results = new Comparison[experts];
        Parallel.For(0, experts, e =>
        {
            int start = checked((int)(e * stride + sliceOffset));
            results[e] = Numerics.CompareScaled($"{name}[expert {e}]", actual.AsSpan(start, (int)sliceElements),
                expected.AsSpan(start, (int)sliceElements), _tolerance);
        });
        int failing = 0;
        long mismatches = 0, nan = 0;
        double maxAbs = 0;
        foreach (Comparison c in results)
        {
            mismatches += c.Mismatches;
            nan += c.NaNCount;
            maxAbs = double.IsNaN(c.MaxAbsError) || double.IsNaN(maxAbs) ? double.NaN : Math.Max(maxAbs, c.MaxAbsError);
            if (c.AllClose && RelativeOk(c)) continue;
            if (++failing <= 4) _failures.Add(Describe(c));
        }
        string summary = string.Create(CultureInfo.InvariantCulture,
            $"{name} (all {experts} experts): max_abs={maxAbs:G4} mismatches={mismatches} nan={nan} failing_experts={failing}");
        if (failing > 0) _failures.Add(summary);
        else _passes.Add(summary);
    }

    /// <summary>Exact equality of integer tensors (token counts, gather).</summary>
    public void Equal(string name, ReadOnlySpan<int> actual, ReadOnlySpan<int> expected)
    {
        if (actual.Length != expected.Length)
        {
            _failures.Add($"{name}: length {actual.Length}, expected {expected.Length}");
            return;
        }
        int first = -1, count = 0;
        for (int i = 0; i < actual.Length; i++)
            if (actual[i] != expected[i]) { if (first < 0) first = i; count++; }
        if (count == 0) _passes.Add($"{name}: equal ({actual.Length})");
        else _failures.Add($"{name}: {count} of {actual.Length} differ; first [{first}] actual={actual[first]} expected={expected[first]}");
    }

    public void Fail(string message) => _failures.Add(message);

    /// <summary>Fails the test with every failing comparison (and the count of passing ones).</summary>
    public void AssertAll(string context)
    {
        if (_failures.Count == 0) return;
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"{context}: {_failures.Count} failing comparison(s), {_passes.Count} passing (atol=rtol={_tolerance:G2}):");
        foreach (string f in _failures) sb.Append("\n  FAIL ").Append(f);
        Assert.Fail(sb.ToString());
    }

    private void Record(Comparison c)
    {
        if (c.AllClose && RelativeOk(c)) _passes.Add(c.ToString());
        else _failures.Add(Describe(c));
    }

    private bool RelativeOk(Comparison c) => c.RelativeNormError <= _tolerance || (c.Count == 0);

    private string Describe(Comparison c) => RelativeOk(c) ? c.ToString() : $"{c} — relative norm above {_tolerance:G2}";
}
