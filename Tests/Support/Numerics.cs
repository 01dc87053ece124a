// Tests keep the short name; the record is the library's (MoeNative.Reference.TensorComparison).
global using Comparison = MoeNative.Reference.TensorComparison;

using MoeNative.Reference;
using MoeNative.Interop;

namespace MoeNative.Tests.Support;

/// <summary>Per-dtype tolerances: <see cref="TensorTolerance.For"/> (bf16 1e-2, fp16 1e-3, fp32 1e-5).</summary>
public static class Tolerance
{
    public static double For(ScalarType dtype) => TensorTolerance.For(dtype);
}

/// <summary>
/// The MSTest face of the library's comparison rules (<see cref="TensorComparison"/>): the same rules, plus asserts
/// that fail with the comparison's one-line text.
/// </summary>
public static class Numerics
{
    /// <summary><see cref="TensorComparison.Elementwise{T}"/> with atol = rtol = <paramref name="tolerance"/>.</summary>
    public static Comparison Compare(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double tolerance) =>
        TensorComparison.Elementwise(name, actual, expected, tolerance, tolerance);

    /// <summary><see cref="TensorComparison.Elementwise{T}"/>: |a − e| ≤ atol + rtol·|e|, no NaN.</summary>
    public static Comparison Compare(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double atol, double rtol) =>
        TensorComparison.Elementwise(name, actual, expected, atol, rtol);

    /// <summary>
    /// <see cref="TensorComparison.Scaled"/>: |a − e| ≤ tol·max(1, max|e|) + tol·|e|, ‖a − e‖ / max(‖e‖, √n) ≤ tol, no NaN.
    /// The rule every implementation-vs-implementation comparison uses.
    /// </summary>
    public static Comparison CompareScaled(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double tolerance) =>
        TensorComparison.Scaled(name, actual, expected, tolerance);

    /// <summary>max |a − e|.</summary>
    public static double MaxAbsError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected) => Compare("", actual, expected, 0).MaxAbsError;

    /// <summary>Number of NaN elements.</summary>
    public static long CountNaN(ReadOnlySpan<float> values)
    {
        long n = 0;
        foreach (float v in values) if (float.IsNaN(v)) n++;
        return n;
    }

    /// <summary>Fails with the comparison text unless |a − e| ≤ tol + tol·|e| everywhere and no NaN.</summary>
    public static void AssertAllClose(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double tolerance)
    {
        Comparison c = Compare(name, actual, expected, tolerance);
        if (!c.AllClose) Assert.Fail(c.ToString());
    }

    /// <summary>Fails once, listing every comparison that is not <see cref="TensorComparison.AllClose"/>, so that one
    /// bad tensor never hides another.</summary>
    public static void AssertAllClose(IEnumerable<Comparison> results)
    {
        string[] bad = results.Where(r => !r.AllClose).Select(r => r.ToString()).ToArray();
        if (bad.Length > 0) Assert.Fail($"{bad.Length} comparison(s) out of tolerance:\n" + string.Join("\n", bad));
    }

    /// <summary>Fails unless ‖a − e‖/‖e‖ ≤ <paramref name="maxRelative"/> and no NaN.</summary>
    public static void AssertRelativeNorm(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double maxRelative)
    {
        Comparison c = Compare(name, actual, expected, 0);
        if (c.NaNCount != 0 || !(c.RelativeNormError <= maxRelative))
            Assert.Fail($"{c} — relative-norm bound {maxRelative:G3}");
    }
}
