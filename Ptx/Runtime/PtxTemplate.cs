using System.Text;
using System.Text.RegularExpressions;

namespace MoeNative.Ptx;

/// <summary>
/// Load-time composition and specialisation of PTX text, in two steps.
/// <para><b>1. Includes</b> (<see cref="Compose"/>, or <see cref="PtxLibrary.ReadComposed"/> for an embedded file): a line
/// <code>    #include "GroupedGemm/fragments/sched_persistent.ptx"  A_ROW=16 WIDEN="cvt.f32.f16 x, h;"  // comment</code>
/// is replaced by the text of that fragment (a path relative to <c>Ptx/</c>, as <see cref="PtxLibrary.ReadEmbedded"/>
/// addresses it). The optional <c>NAME=value</c> pairs (value bare, or double-quoted with <c>\"</c> and <c>\\</c>
/// escapes) are substituted into that fragment's own text, strictly (a pair the fragment's text does not use is an
/// error); then the fragment's own includes are composed the same way, recursively. So a fragment passes a value on
/// explicitly (<c>#include "F/fragments/inner.ptx" ROWS={{ROWS}}</c>) or picks a nested fragment by it
/// (<c>#include "Routing/fragments/unpack_x4_{{DTYPE_NAME}}.ptx"</c>); a value never leaks past the fragment it was
/// given to. Placeholders left unbound stay for step 2. A cycle, a missing file, a malformed line or a path with an
/// unbound placeholder throws <see cref="PtxTemplateException"/> naming the file, the line and the include chain.
/// Fragments live in a <c>fragments/</c> folder of their family: plain PTX lines (no <c>.version</c>), a header
/// comment saying what they expect (registers, labels, placeholders) and what they leave; the catalog never
/// loads them as modules.</para>
/// <para><b>2. Placeholders</b> (<see cref="Specialise"/>): every <c>{{NAME}}</c> (NAME = [A-Z0-9_]+) is replaced by its
/// value. Strict both ways: a placeholder with no value, or a value no placeholder uses, is an error, so a renamed
/// constant can never be silently ignored; an <c>#include</c> line left uncomposed is an error too.</para>
/// The result is plain PTX: what <c>moenative ptx dump</c> writes, ptxas checks and <see cref="PtxSignature"/> parses.
/// </summary>
internal static partial class PtxTemplate
{
    [GeneratedRegex(@"\{\{([A-Za-z0-9_]+)\}\}")]
    private static partial Regex PlaceholderRegex();

    [GeneratedRegex(@"\{\{|\}\}")]
    private static partial Regex BraceRegex();

    /// <summary>The distinct placeholder names in <paramref name="text"/>, in order of first appearance.</summary>
    public static IReadOnlyList<string> Placeholders(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var names = new List<string>();
        foreach (Match m in PlaceholderRegex().Matches(text))
            if (!names.Contains(m.Groups[1].Value)) names.Add(m.Groups[1].Value);
        return names;
    }

    /// <summary>Replaces every <c>{{NAME}}</c> in <paramref name="text"/> by <c>values[NAME]</c>.</summary>
    /// <exception cref="PtxTemplateException">
    /// A placeholder has no value (names them all), a value is not used by any placeholder (names them all), a value
    /// itself contains <c>{{</c> or <c>}}</c>, or braces are left over after substitution.
    /// </exception>
    public static string Specialise(string text, IReadOnlyDictionary<string, string> values)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(values);
        if (FirstIncludeLine(text) is int includeLine)
            throw new PtxTemplateException(
                $"PTX template specialisation failed: an #include at line {includeLine} was not composed (read the file with PtxLibrary.ReadComposed or call PtxTemplate.Compose first).", [], []);
        IReadOnlyList<string> used = Placeholders(text);
        string[] missing = used.Where(n => !values.ContainsKey(n)).ToArray();
        string[] unknown = values.Keys.Where(k => !used.Contains(k)).Order(StringComparer.Ordinal).ToArray();
        string[] nested = values.Where(kv => kv.Value is null || BraceRegex().IsMatch(kv.Value)).Select(kv => kv.Key).ToArray();
        if (missing.Length > 0 || unknown.Length > 0 || nested.Length > 0)
        {
            var sb = new StringBuilder("PTX template specialisation failed:");
            if (missing.Length > 0) sb.Append(" placeholders without a value: ").Append(string.Join(", ", missing.Select(n => "{{" + n + "}}"))).Append('.');
            if (unknown.Length > 0) sb.Append(" values for unknown placeholders: ").Append(string.Join(", ", unknown)).Append('.');
            if (nested.Length > 0) sb.Append(" values that are null or contain '{{'/'}}': ").Append(string.Join(", ", nested)).Append('.');
            throw new PtxTemplateException(sb.ToString(), missing, unknown);
        }
        string result = PlaceholderRegex().Replace(text, m => values[m.Groups[1].Value]);
        Match leftover = BraceRegex().Match(result);
        if (leftover.Success)
        {
            int line = result.AsSpan(0, leftover.Index).Count('\n') + 1;
            throw new PtxTemplateException(
                $"PTX template specialisation failed: malformed placeholder braces left at line {line}.", [], []);
        }
        return result;
    }
}

/// <summary>A PTX template could not be specialised; <see cref="Missing"/> and <see cref="Unknown"/> name the culprits.</summary>
internal sealed class PtxTemplateException(string message, IReadOnlyList<string> missing, IReadOnlyList<string> unknown)
    : ArgumentException(message)
{
    /// <summary>Placeholders in the text that were given no value.</summary>
    public IReadOnlyList<string> Missing { get; } = missing;

    /// <summary>Values given for names that no placeholder in the text uses.</summary>
    public IReadOnlyList<string> Unknown { get; } = unknown;
}
