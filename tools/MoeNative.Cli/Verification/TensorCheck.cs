using System.Globalization;
using MoeNative.Reference;

namespace MoeNative.Cli.Verification;

/// <summary>
/// One row of the <c>verify</c> table: a tensor of one implementation compared with the same tensor of another under
/// the library's rule (<see cref="TensorComparison.Scaled"/> for floats, <see cref="TensorComparison.Exact"/> for the
/// integer tensors: token counts, gather). Forward tensors and gradients are judged alike.
/// </summary>
/// <param name="Comparison">Which pair, e.g. "grouped vs hf".</param>
/// <param name="Tensor">Which tensor, e.g. "grad_gate_proj".</param>
/// <param name="Shape">Its shape, e.g. "[E,I,H]=[128,768,2048]".</param>
/// <param name="Result">The metrics and the verdict; null when the check could not run.</param>
/// <param name="Tolerance">The rule's tolerance (0 for exact checks).</param>
/// <param name="Note">Why the check could not run (then it fails), else null.</param>
public sealed record TensorCheck(string Comparison, string Tensor, string Shape, TensorComparison? Result, double Tolerance, string? Note = null)
{
    public bool Passed => Note is null && Result is { AllClose: true };

    /// <summary>Float tensors of any shape, flattened: <see cref="TensorComparison.Scaled"/> at <paramref name="tolerance"/>,
    /// or <see cref="TensorComparison.ScaledWithFloor"/> when a per-element scale floor is given.</summary>
    public static TensorCheck Compare(string comparison, string tensor, string shape,
        ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double tolerance, ReadOnlySpan<float> floor = default) =>
        actual.Length != expected.Length
            ? LengthMismatch(comparison, tensor, shape, tolerance, actual.Length, expected.Length)
            : new(comparison, tensor, shape, floor.IsEmpty
                ? TensorComparison.Scaled(tensor, actual, expected, tolerance)
                : TensorComparison.ScaledWithFloor(tensor, actual, expected, tolerance, floor), tolerance);

    /// <summary>Integer tensors: <see cref="TensorComparison.Exact"/>.</summary>
    public static TensorCheck CompareExact(string comparison, string tensor, string shape, ReadOnlySpan<int> actual, ReadOnlySpan<int> expected) =>
        actual.Length != expected.Length
            ? LengthMismatch(comparison, tensor, shape, 0, actual.Length, expected.Length)
            : new(comparison, tensor, shape, TensorComparison.Exact(tensor, actual, expected), 0);

    public static TensorCheck Failed(string comparison, string tensor, string shape, double tolerance, string note) =>
        new(comparison, tensor, shape, null, tolerance, note);

    private static TensorCheck LengthMismatch(string comparison, string tensor, string shape, double tolerance, int actual, int expected) =>
        Failed(comparison, tensor, shape, tolerance, $"{actual} elements, the reference has {expected}");

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Comparison} {Tensor} {Shape}: {(Result is null ? "not compared" : Result.ToString())} {(Passed ? "pass" : "FAIL")}{(Note is null ? "" : " (" + Note + ")")}");
}
