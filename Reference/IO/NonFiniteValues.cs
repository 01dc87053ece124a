using System.Globalization;
using System.Numerics.Tensors;
using MoeNative.Interop;

namespace MoeNative.Reference.IO;

/// <summary>Non-finite values (NaN, ±Inf) in an input are refused by default: the file and tensor are named with
/// the count and the first index. Thrown before anything runs.</summary>
public sealed class NonFiniteInputException(string message) : FormatException(message);

/// <summary>A run produced non-finite values (overflow in the storage dtype, or non-finite inputs that were allowed).
/// It is a failed run: the CLI exits 1.</summary>
/// <param name="message">What is non-finite, and whether the output was written.</param>
/// <param name="written">True when the output file was written anyway (non-finite values were allowed).</param>
public sealed class NonFiniteResultException(string message, bool written) : Exception(message)
{
    /// <summary>True when the output file was written anyway (non-finite values were allowed).</summary>
    public bool Written { get; } = written;
}

/// <summary>Finds non-finite values in float tensors.</summary>
public static class NonFiniteValues
{
    /// <summary>Number of NaN/±Inf elements and the index of the first (-1 when none).</summary>
    public static (long Count, long First) Find(ReadOnlySpan<float> values)
    {
        // NOTE: a sum of finite values is finite or (overflowing) ±Inf; with a NaN or ±Inf in it, NaN or ±Inf. So a
        // finite sum proves all finite in one vectorised pass; otherwise count element by element.
        if (float.IsFinite(TensorPrimitives.Sum(values))) return (0, -1);
        long count = 0, first = -1;
        for (int i = 0; i < values.Length; i++)
        {
            if (float.IsFinite(values[i])) continue;
            if (first < 0) first = i;
            count++;
        }
        return (count, first);
    }

    /// <summary>Throws <see cref="NonFiniteInputException"/> naming <paramref name="what"/> unless every value is finite.</summary>
    /// <param name="values">The tensor (as rounded to the storage dtype: an fp16 overflow shows as Inf).</param>
    /// <param name="what">File and tensor, e.g. <c>x.safetensors: tensor 'hidden_states'</c>.</param>
    /// <param name="dtype">The storage dtype the values were rounded to.</param>
    public static void RequireFinite(ReadOnlySpan<float> values, string what, ScalarType dtype)
    {
        (long count, long first) = Find(values);
        if (count == 0) return;
        float firstValue = values[(int)first];
        throw new NonFiniteInputException(string.Create(CultureInfo.InvariantCulture,
            $"{what} has {count} non-finite value(s) in {dtype.ShortName()} (first at flat index {first}: {firstValue}); ")
            + "non-finite inputs and weights are refused (--allow-nonfinite runs anyway).");
    }

    /// <summary>Names of the tensors with non-finite values and their counts, e.g. <c>output (12 of 4096)</c>; empty when
    /// all are finite. A tensor is given as the blocks it is written from, in order (one block for a plain array).</summary>
    public static IReadOnlyList<string> Describe(IEnumerable<(string Name, IReadOnlyList<ReadOnlyMemory<float>> Blocks)> tensors)
    {
        var bad = new List<string>();
        foreach ((string name, IReadOnlyList<ReadOnlyMemory<float>> blocks) in tensors)
        {
            long count = 0, length = 0;
            foreach (ReadOnlyMemory<float> block in blocks)
            {
                count += Find(block.Span).Count;
                length += block.Length;
            }
            if (count > 0) bad.Add(string.Create(CultureInfo.InvariantCulture, $"{name} ({count} of {length})"));
        }
        return bad;
    }
}
