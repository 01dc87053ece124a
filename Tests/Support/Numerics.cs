using System.Globalization;
using MoeNative.Reference;

namespace MoeNative.Tests.Support;

/// <summary>Per-dtype tolerances (atol = rtol, as in the original PyTorch tests).</summary>
public static class Tolerance
{
    /// <summary>bf16 1e-2, fp16 1e-3, fp32 1e-5.</summary>
    public static double For(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => 1e-2,
        ScalarType.Float16 => 1e-3,
        ScalarType.Float32 => 1e-5,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };
}

/// <summary>The outcome of comparing one tensor with its reference.</summary>
/// <param name="Name">What was compared (for messages).</param>
/// <param name="Count">Elements compared.</param>
/// <param name="MaxAbsError">max |actual − expected| (NaN if any NaN).</param>
/// <param name="RelativeNormError">‖actual − expected‖₂ / ‖expected‖₂ (0 when both are zero; ∞ when only expected is).</param>
/// <param name="Mismatches">Elements failing |a − e| ≤ atol + rtol·|e| (NaN always fails).</param>
/// <param name="FirstMismatch">Index of the first failing element, −1 if none.</param>
/// <param name="NaNCount">Elements of actual that are NaN.</param>
/// <param name="Atol">Absolute tolerance used.</param>
/// <param name="Rtol">Relative tolerance used.</param>
/// <param name="FirstMismatchText">"; first mismatch [i] actual=… expected=…" or empty.</param>
public sealed record Comparison(string Name, long Count, double MaxAbsError, double RelativeNormError, long Mismatches,
    long FirstMismatch, long NaNCount, double Atol, double Rtol, string FirstMismatchText)
{
    public bool AllClose => Mismatches == 0 && NaNCount == 0;

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Name}: n={Count} max_abs={MaxAbsError:G4} rel_norm={RelativeNormError:G4} mismatches={Mismatches} nan={NaNCount} (atol=rtol={Atol:G2}){FirstMismatchText}");
}

/// <summary>Comparison helpers shared by every test folder.</summary>
public static class Numerics
{
    /// <summary>Compares element-wise with |a − e| ≤ atol + rtol·|e|, atol = rtol = <paramref name="tolerance"/>.</summary>
    public static Comparison Compare(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double tolerance) =>
        Compare(name, actual, expected, tolerance, tolerance);

    public static Comparison Compare(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double atol, double rtol)
    {
        if (actual.Length != expected.Length)
            throw new ArgumentException($"{name}: actual has {actual.Length} elements, expected has {expected.Length}.", nameof(actual));
        double maxAbs = 0, diffSq = 0, refSq = 0;
        long mismatches = 0, first = -1, nan = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double a = actual[i], e = expected[i], d = Math.Abs(a - e);
            if (double.IsNaN(a)) nan++;
            if (double.IsNaN(d)) maxAbs = double.NaN;
            else if (!double.IsNaN(maxAbs)) maxAbs = Math.Max(maxAbs, d);
            diffSq += (a - e) * (a - e);
            refSq += e * e;
            if (!(d <= atol + rtol * Math.Abs(e)))
            {
                if (first < 0) first = i;
                mismatches++;
            }
        }
        double rel = refSq == 0 ? (diffSq == 0 ? 0 : double.PositiveInfinity) : Math.Sqrt(diffSq / refSq);
        string text = first < 0 ? "" : string.Create(CultureInfo.InvariantCulture, $"; first mismatch [{first}] actual={actual[(int)first]:G9} expected={expected[(int)first]:G9}");
        return new Comparison(name, actual.Length, maxAbs, rel, mismatches, first, nan, atol, rtol, text);
    }

    /// <summary>Double overload (float64 checks).</summary>
    public static Comparison Compare(string name, ReadOnlySpan<double> actual, ReadOnlySpan<double> expected, double atol, double rtol)
    {
        if (actual.Length != expected.Length)
            throw new ArgumentException($"{name}: actual has {actual.Length} elements, expected has {expected.Length}.", nameof(actual));
        double maxAbs = 0, diffSq = 0, refSq = 0;
        long mismatches = 0, first = -1, nan = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double d = Math.Abs(actual[i] - expected[i]);
            if (double.IsNaN(actual[i])) nan++;
            if (double.IsNaN(d)) maxAbs = double.NaN;
            else if (!double.IsNaN(maxAbs)) maxAbs = Math.Max(maxAbs, d);
            diffSq += (actual[i] - expected[i]) * (actual[i] - expected[i]);
            refSq += expected[i] * expected[i];
            if (!(d <= atol + rtol * Math.Abs(expected[i]))) { if (first < 0) first = i; mismatches++; }
        }
        double rel = refSq == 0 ? (diffSq == 0 ? 0 : double.PositiveInfinity) : Math.Sqrt(diffSq / refSq);
        string text = first < 0 ? "" : string.Create(CultureInfo.InvariantCulture, $"; first mismatch [{first}] actual={actual[(int)first]:G17} expected={expected[(int)first]:G17}");
        return new Comparison(name, actual.Length, maxAbs, rel, mismatches, first, nan, atol, rtol, text);
    }

    /// <summary>
    /// Like <see cref="Compare(string, ReadOnlySpan{float}, ReadOnlySpan{float}, double)"/> with the absolute part scaled
    /// by the tensor's magnitude: |a − e| ≤ tol·max(1, max|e|) + tol·|e|, plus ‖a − e‖/‖e‖ ≤ tol. For comparing two
    /// implementations with different (legitimate) rounding points: an element that is a sum of O(1) terms carries an
    /// absolute error of the terms' scale even when it cancels to a small value. With unit-scale tensors this is the
    /// plain atol = rtol test. This is the rule every implementation-vs-implementation comparison uses.
    /// </summary>
    public static Comparison CompareScaled(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double tolerance)
    {
        float max = 0;
        double refSq = 0, diffSq = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            max = MathF.Max(max, MathF.Abs(expected[i]));
            refSq += (double)expected[i] * expected[i];
            double d = (double)actual[i] - expected[i];
            diffSq += d * d;
        }
        Comparison c = Compare(name, actual, expected, tolerance * Math.Max(1.0, max), tolerance);
        // NOTE: the norm is taken relative to at least a unit-scale tensor of the same size, like the absolute part:
        // an exactly-zero reference (the router gradient when k = 1 and the weights are renormalised) is then judged
        // on its absolute error instead of giving an infinite ratio for rounding noise.
        double rel = Math.Sqrt(diffSq) / Math.Max(Math.Sqrt(refSq), Math.Sqrt(expected.Length));
        if (expected.Length > 0 && !double.IsNaN(c.RelativeNormError)) c = c with { RelativeNormError = rel };
        if (c.Mismatches == 0 && c.RelativeNormError > tolerance)
            c = c with { Mismatches = 1, FirstMismatchText = $"; relative-norm error above {tolerance:G2}" };
        return c;
    }

    /// <summary>Fails with the comparison text unless <see cref="CompareScaled"/> passes.</summary>
    public static void AssertAllCloseScaled(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, ScalarType dtype)
    {
        Comparison c = CompareScaled(name, actual, expected, Tolerance.For(dtype));
        if (!c.AllClose) Assert.Fail(c.ToString());
    }

    /// <summary>max |a − e|.</summary>
    public static double MaxAbsError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected) => Compare("", actual, expected, 0).MaxAbsError;

    /// <summary>‖a − e‖ / ‖e‖.</summary>
    public static double RelativeNormError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected) => Compare("", actual, expected, 0).RelativeNormError;

    /// <summary>|a − e| ≤ tol + tol·|e| everywhere and no NaN.</summary>
    public static bool AllClose(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, ScalarType dtype) =>
        Compare("", actual, expected, Tolerance.For(dtype)).AllClose;

    /// <summary>Number of NaN elements.</summary>
    public static long CountNaN(ReadOnlySpan<float> values)
    {
        long n = 0;
        foreach (float v in values) if (float.IsNaN(v)) n++;
        return n;
    }

    /// <summary>Fails with the comparison text unless all close (per-dtype tolerance) and NaN-free.</summary>
    public static void AssertAllClose(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, ScalarType dtype) =>
        AssertAllClose(name, actual, expected, Tolerance.For(dtype));

    public static void AssertAllClose(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double tolerance)
    {
        Comparison c = Compare(name, actual, expected, tolerance);
        if (!c.AllClose) Assert.Fail(c.ToString());
    }

    /// <summary>Fails unless ‖a − e‖/‖e‖ ≤ <paramref name="maxRelative"/> and no NaN.</summary>
    public static void AssertRelativeNorm(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double maxRelative)
    {
        Comparison c = Compare(name, actual, expected, 0);
        if (c.NaNCount != 0 || !(c.RelativeNormError <= maxRelative))
            Assert.Fail($"{c} — relative-norm bound {maxRelative:G3}");
    }

    // ---- seeded random tensors --------------------------------------------------------------------------------------

    /// <summary>N(0, std²) values rounded to <paramref name="dtype"/>; deterministic in <paramref name="seed"/>.</summary>
    public static float[] RandomNormal(long count, int seed, float std = 1f, ScalarType dtype = ScalarType.Float32) =>
        TensorRandom.Normal(count, seed, std, dtype);

    /// <summary>N(0, std²) double values that are not all float-representable (float64 checks).</summary>
    public static double[] RandomNormalDouble(int count, int seed, double std = 1.0)
    {
        float[] f = TensorRandom.Normal(count, seed, 1f);
        var d = new double[count];
        // Add a second stream's low-order part so values are not float-representable only.
        float[] g = TensorRandom.Normal(count, unchecked(seed + 7919), 1f);
        for (int i = 0; i < count; i++) d[i] = (f[i] + 1e-7 * g[i]) * std;
        return d;
    }

    /// <summary>Random ids in [0, max).</summary>
    public static int[] RandomInts(int count, int maxExclusive, int seed) => TensorRandom.Integers(count, maxExclusive, seed);

    /// <summary>A random routing: k distinct experts per token (uniform), weights uniform-ish positive, rounded to dtype.</summary>
    public static MoeRouting RandomRouting(int tokens, MoeConfig config, int seed, ScalarType dtype = ScalarType.Float32)
    {
        int k = config.TopK, e = config.NumExperts;
        var selected = new int[tokens * k];
        var weights = new float[tokens * k];
        int[] draws = TensorRandom.Integers(tokens * e, int.MaxValue, seed, stream: 1);
        var order = new int[e];
        var keys = new int[e];
        for (int t = 0; t < tokens; t++)
        {
            for (int i = 0; i < e; i++) { order[i] = i; keys[i] = draws[t * e + i]; }
            Array.Sort(keys, order);
            for (int j = 0; j < k; j++)
            {
                selected[t * k + j] = order[j];
                weights[t * k + j] = StoragePrecision.Round(0.1f + (keys[j] % 1000) / 1000f, dtype);
            }
        }
        return new MoeRouting(tokens, k, selected, weights);
    }
}
