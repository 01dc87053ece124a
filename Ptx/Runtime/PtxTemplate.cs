using System.Text;
using System.Text.RegularExpressions;

namespace MoeNative.Ptx;

/// <summary>
/// Load-time specialisation of PTX text: every <c>{{NAME}}</c> (NAME = [A-Z0-9_]+) is replaced by its value.
/// Strict both ways: a placeholder with no value, or a value no placeholder uses, is an error, so a renamed
/// constant can never be silently ignored.
/// </summary>
public static partial class PtxTemplate
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
public sealed class PtxTemplateException(string message, IReadOnlyList<string> missing, IReadOnlyList<string> unknown)
    : ArgumentException(message)
{
    /// <summary>Placeholders in the text that were given no value.</summary>
    public IReadOnlyList<string> Missing { get; } = missing;

    /// <summary>Values given for names that no placeholder in the text uses.</summary>
    public IReadOnlyList<string> Unknown { get; } = unknown;
}
