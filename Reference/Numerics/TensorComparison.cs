using System.Globalization;
using System.Numerics;
using MoeNative.Interop;

namespace MoeNative.Reference;

/// <summary>Per-dtype tolerances, atol = rtol as in the original PyTorch tests: bf16 1e-2, fp16 1e-3, fp32 1e-5.</summary>
public static class TensorTolerance
{
    /// <summary>bf16 1e-2, fp16 1e-3, fp32 1e-5.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Not one of the three storage dtypes.</exception>
    public static double For(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => 1e-2,
        ScalarType.Float16 => 1e-3,
        ScalarType.Float32 => 1e-5,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Expected bf16, fp16 or fp32."),
    };

    /// <summary>
    /// Tolerance for the HF loop's output [T,H] against an implementation that sums the k expert outputs in fp32.
    /// NOTE: the HF loop scales each expert's output by its routing weight in the storage dtype and adds it into a
    /// storage-dtype buffer (<c>index_add_</c>): 2k roundings (product, then sum, per expert) where the grouped and
    /// fused paths round once. Their random walk adds about sqrt(2k)/2 ulps, so the tolerance is widened by
    /// max(1, sqrt(2k)/2) (2x at k = 8, 1.41x at k = 4). Seen: on an H100, HF vs grouped, Qwen3-30B-A3B fp16, T=1024,
    /// one element of 2M off by 3 ulps; in the CPU shape fuzz (seed 12000017: k=4 fp16) one element of 17,860 off by
    /// 3 ulps, past the earlier sqrt(k)/2 widening that counted one rounding per expert.
    /// </summary>
    public static double ForHfAccumulatedOutput(ScalarType dtype, int topK) => For(dtype) * Math.Max(1.0, Math.Sqrt(2.0 * topK) / 2);
}

/// <summary>
/// One tensor compared with its reference: the error metrics and whether they are within the rule's bounds. Made by
/// <see cref="Scaled"/> (the rule every implementation-vs-implementation comparison uses), <see cref="Elementwise{T}"/>
/// (plain atol + rtol·|e|, for a result against an exact or naive computation) or <see cref="Exact"/> (integer tensors).
/// </summary>
/// <param name="Name">What was compared (for messages).</param>
/// <param name="Count">Elements compared.</param>
/// <param name="MaxAbsError">max |a − e| (NaN when any difference is NaN).</param>
/// <param name="RelativeNormError">‖a − e‖₂ over the rule's norm: ‖e‖₂ (0 when both are zero, ∞ when only e is), or
/// max(‖e‖₂, √n) for <see cref="Scaled"/>.</param>
/// <param name="Mismatches">Elements outside |a − e| ≤ atol + rtol·|e| (NaN always counts).</param>
/// <param name="NaNCount">NaN elements of the actual tensor.</param>
/// <param name="FirstMismatch">Index of the first element outside the bound, −1 if none.</param>
/// <param name="FirstActual">The actual value at <paramref name="FirstMismatch"/> (NaN if none).</param>
/// <param name="FirstExpected">The expected value at <paramref name="FirstMismatch"/> (NaN if none).</param>
/// <param name="Atol">Absolute tolerance used (already scaled for <see cref="Scaled"/>).</param>
/// <param name="Rtol">Relative tolerance used.</param>
/// <param name="RelativeNormBound">Largest passing <paramref name="RelativeNormError"/>; +∞ when the rule has none.</param>
public sealed record TensorComparison(
    string Name, long Count, double MaxAbsError, double RelativeNormError, long Mismatches, long NaNCount,
    long FirstMismatch, double FirstActual, double FirstExpected, double Atol, double Rtol, double RelativeNormBound)
{
    /// <summary>Every element within its bound, no NaN, and the relative norm within <see cref="RelativeNormBound"/>.</summary>
    public bool AllClose => Mismatches == 0 && NaNCount == 0 && RelativeNormError <= RelativeNormBound;

    /// <summary>Whether <see cref="RelativeNormError"/> is within <see cref="RelativeNormBound"/>.</summary>
    public bool RelativeNormWithinBound => RelativeNormError <= RelativeNormBound;

    /// <summary>
    /// The rule for two implementations with different (legitimate) rounding points, tolerance <c>tol</c>:
    /// every element |a − e| ≤ tol·max(1, max|e|) + tol·|e|; ‖a − e‖₂ / max(‖e‖₂, √n) ≤ tol; no NaN.
    /// NOTE: the absolute part is scaled by the tensor's magnitude because an element that is a sum of O(1) terms carries
    /// an absolute error of the terms' scale even when it cancels to a small value; with unit-scale tensors this is the
    /// plain atol = rtol test. The norm is taken relative to at least a unit-scale tensor of the same size, like the
    /// absolute part: an exactly-zero reference (the router gradient when k = 1 and the weights are renormalised) is then
    /// judged on its absolute error instead of giving an infinite ratio for rounding noise.
    /// </summary>
    /// <param name="name">What is compared (for messages).</param>
    /// <param name="actual">Tensor under test, any shape, flattened.</param>
    /// <param name="expected">Reference, same shape as <paramref name="actual"/>.</param>
    /// <param name="tolerance">Per-dtype tolerance, usually <see cref="TensorTolerance.For"/>.</param>
    /// <exception cref="ArgumentException">The lengths differ.</exception>
    public static TensorComparison Scaled(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double tolerance)
    {
        CheckLengths(name, actual.Length, expected.Length);
        double maxExpected = 0;
        foreach (float e in expected) maxExpected = Math.Max(maxExpected, Math.Abs(e));
        TensorComparison c = Elementwise(name, actual, expected, tolerance * Math.Max(1.0, maxExpected), tolerance);
        double normFloor = Math.Sqrt(expected.Length);
        double rel = c.Count == 0 || double.IsNaN(c.RelativeNormError)
            ? c.RelativeNormError
            : Math.Sqrt(c.DiffSquares) / Math.Max(Math.Sqrt(c.ExpectedSquares), normFloor);
        return c with { RelativeNormError = rel, RelativeNormBound = tolerance };
    }

    /// <summary>
    /// <see cref="Scaled"/> with a per-element floor under the magnitude the absolute part is scaled by:
    /// |a − e| ≤ tol·max(1, max|e|, floor_i) + tol·|e|; the relative norm as in <see cref="Scaled"/>, over
    /// max(‖e‖₂, √n, ‖floor‖₂). For a tensor whose elements are differences of larger terms with a known first-order
    /// error scale (the router gradient: <see cref="RouterGradientScale"/>).
    /// </summary>
    /// <exception cref="ArgumentException">The lengths differ.</exception>
    public static TensorComparison ScaledWithFloor(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double tolerance,
        ReadOnlySpan<float> floor)
    {
        CheckLengths(name, actual.Length, expected.Length);
        CheckLengths(name + " (floor)", floor.Length, expected.Length);
        double maxExpected = 0, floorSq = 0;
        foreach (float e in expected) maxExpected = Math.Max(maxExpected, Math.Abs(e));
        foreach (float f in floor) floorSq += (double)f * f;
        double atol = tolerance * Math.Max(1.0, maxExpected);
        TensorComparison c = ElementwiseCore(name, actual, expected, atol, tolerance, floor, tolerance);
        double normFloor = Math.Max(Math.Sqrt(expected.Length), Math.Sqrt(floorSq));
        double rel = c.Count == 0 || double.IsNaN(c.RelativeNormError)
            ? c.RelativeNormError
            : Math.Sqrt(c.DiffSquares) / Math.Max(Math.Sqrt(c.ExpectedSquares), normFloor);
        return c with { RelativeNormError = rel, RelativeNormBound = tolerance };
    }

    /// <summary>
    /// Element-wise |a − e| ≤ atol + rtol·|e| and no NaN; the relative norm ‖a − e‖₂ / ‖e‖₂ is reported, not bounded.
    /// For a result against an exact or naive computation (float64 checks, GEMM against a loop).
    /// </summary>
    /// <param name="name">What is compared (for messages).</param>
    /// <param name="actual">Tensor under test, any shape, flattened.</param>
    /// <param name="expected">Reference, same shape as <paramref name="actual"/>.</param>
    /// <param name="atol">Absolute tolerance.</param>
    /// <param name="rtol">Relative tolerance.</param>
    /// <exception cref="ArgumentException">The lengths differ.</exception>
    public static TensorComparison Elementwise<T>(string name, ReadOnlySpan<T> actual, ReadOnlySpan<T> expected, double atol, double rtol)
        where T : unmanaged, IBinaryFloatingPointIeee754<T> => ElementwiseCore(name, actual, expected, atol, rtol, [], 0);

    // atol_i = max(atol, floorTol·floor_i) when a floor is given.
    private static TensorComparison ElementwiseCore<T>(string name, ReadOnlySpan<T> actual, ReadOnlySpan<T> expected, double atol, double rtol,
        ReadOnlySpan<float> floor, double floorTol)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        CheckLengths(name, actual.Length, expected.Length);
        double maxAbs = 0, diffSq = 0, refSq = 0, firstActual = double.NaN, firstExpected = double.NaN;
        long mismatches = 0, first = -1, nan = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double a = double.CreateTruncating(actual[i]), e = double.CreateTruncating(expected[i]), d = Math.Abs(a - e);
            if (double.IsNaN(a)) nan++;
            maxAbs = double.IsNaN(d) || double.IsNaN(maxAbs) ? double.NaN : Math.Max(maxAbs, d);
            diffSq += d * d;
            refSq += e * e;
            double bound = floor.IsEmpty ? atol : Math.Max(atol, floorTol * floor[i]);
            if (!(d <= bound + rtol * Math.Abs(e)))
            {
                if (first < 0) (first, firstActual, firstExpected) = (i, a, e);
                mismatches++;
            }
        }
        double rel = refSq == 0 ? (diffSq == 0 ? 0 : double.PositiveInfinity) : Math.Sqrt(diffSq / refSq);
        return new TensorComparison(name, actual.Length, maxAbs, rel, mismatches, nan, first, firstActual, firstExpected,
            atol, rtol, double.PositiveInfinity) { DiffSquares = diffSq, ExpectedSquares = refSq };
    }

    /// <summary>Exact equality of integer tensors (token counts, gather indices); metrics as for floats, tolerance 0.</summary>
    /// <exception cref="ArgumentException">The lengths differ.</exception>
    public static TensorComparison Exact(string name, ReadOnlySpan<int> actual, ReadOnlySpan<int> expected)
    {
        CheckLengths(name, actual.Length, expected.Length);
        double maxAbs = 0, diffSq = 0, refSq = 0, firstActual = double.NaN, firstExpected = double.NaN;
        long mismatches = 0, first = -1;
        for (int i = 0; i < actual.Length; i++)
        {
            double d = Math.Abs((double)actual[i] - expected[i]);
            maxAbs = Math.Max(maxAbs, d);
            diffSq += d * d;
            refSq += (double)expected[i] * expected[i];
            if (d == 0) continue;
            if (first < 0) (first, firstActual, firstExpected) = (i, actual[i], expected[i]);
            mismatches++;
        }
        double rel = refSq == 0 ? (diffSq == 0 ? 0 : double.PositiveInfinity) : Math.Sqrt(diffSq / refSq);
        return new TensorComparison(name, actual.Length, maxAbs, rel, mismatches, 0, first, firstActual, firstExpected,
            0, 0, double.PositiveInfinity);
    }

    /// <summary>One line: metrics, tolerances, the first mismatch and, when it fails, the relative-norm bound.</summary>
    public override string ToString()
    {
        var text = string.Create(CultureInfo.InvariantCulture,
            $"{Name}: n={Count} max_abs={MaxAbsError:G4} rel_norm={RelativeNormError:G4} mismatches={Mismatches} nan={NaNCount} (atol={Atol:G2} rtol={Rtol:G2})");
        if (FirstMismatch >= 0)
            text += $"; first mismatch [{FirstMismatch}] actual={RoundTrip(FirstActual)} expected={RoundTrip(FirstExpected)}";
        if (!RelativeNormWithinBound)
            text += string.Create(CultureInfo.InvariantCulture, $"; relative-norm error above {RelativeNormBound:G2}");
        return text;
    }

    // Shortest text that round-trips: a float's digits for values that came from floats, a double's otherwise.
    private static string RoundTrip(double value) => (double)(float)value == value || double.IsNaN(value)
        ? ((float)value).ToString(CultureInfo.InvariantCulture)
        : value.ToString(CultureInfo.InvariantCulture);

    // Sums behind RelativeNormError, kept so Scaled can renormalise without a second pass over the data.
    private double DiffSquares { get; init; }
    private double ExpectedSquares { get; init; }

    private static void CheckLengths(string name, int actual, int expected)
    {
        if (actual != expected)
            throw new ArgumentException($"{name}: actual has {actual} elements, expected has {expected}.", nameof(actual));
    }
}
