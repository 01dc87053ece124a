using System.Text;
using System.Text.RegularExpressions;

namespace MoeNative.Ptx;

// Step 1 of PtxTemplate: #include lines replaced by fragment text (syntax in PtxTemplate's summary).
internal static partial class PtxTemplate
{
    /// <summary>Deepest include chain accepted (a chain this long is a mistake, not a design).</summary>
    public const int MaxIncludeDepth = 16;

    // #include "path" [NAME=value | NAME="quoted value"]* [// comment]
    [GeneratedRegex("""^[ \t]*#include\b(?<rest>.*)$""")]
    private static partial Regex IncludeLineRegex();

    [GeneratedRegex("""\G[ \t]*"(?<path>[^"]+)"(?<args>.*)$""")]
    private static partial Regex IncludePathRegex();

    [GeneratedRegex("""\G[ \t]*(?:(?<name>[A-Za-z0-9_]+)=(?:"(?<quoted>(?:[^"\\]|\\.)*)"|(?<bare>[^\s"]+))|(?<comment>//.*)|(?<end>[ \t]*$))""")]
    private static partial Regex IncludeArgRegex();

    /// <summary>
    /// Replaces every <c>#include</c> line of <paramref name="text"/> (the file <paramref name="source"/>, named in errors)
    /// by the composed text of the fragment <paramref name="read"/> returns for its path, with that line's values
    /// substituted into the fragment. Text without includes is returned unchanged.
    /// </summary>
    /// <exception cref="PtxTemplateException">A malformed include line, a fragment that cannot be read, an include
    /// cycle or a chain deeper than <see cref="MaxIncludeDepth"/>, or an include value the fragment does not use;
    /// the message names the file and line (and the chain of includes that led there).</exception>
    public static string Compose(string text, string source, Func<string, string> read)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentException.ThrowIfNullOrWhiteSpace(source);
        ArgumentNullException.ThrowIfNull(read);
        return ComposeFile(text, Normalise(source), read, [Normalise(source)]);
    }

    /// <summary>The fragment paths <paramref name="text"/> includes directly, in order (not recursive, not validated).</summary>
    public static IReadOnlyList<string> Includes(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var paths = new List<string>();
        foreach (string line in text.Split('\n'))
            if (IncludeLineRegex().Match(line.TrimEnd('\r')) is { Success: true } m &&
                IncludePathRegex().Match(m.Groups["rest"].Value) is { Success: true } p)
                paths.Add(Normalise(p.Groups["path"].Value));
        return paths;
    }

    private static string ComposeFile(string text, string source, Func<string, string> read, List<string> chain)
    {
        if (FirstIncludeLine(text) is null) return text;
        string[] lines = text.Split('\n');
        var sb = new StringBuilder(text.Length * 2);
        for (int i = 0; i < lines.Length; i++)
        {
            if (i > 0) sb.Append('\n');
            string line = lines[i];
            bool cr = line.EndsWith('\r');
            Match include = IncludeLineRegex().Match(cr ? line[..^1] : line);
            if (!include.Success) { sb.Append(line); continue; }
            (string path, Dictionary<string, string> values) = ParseInclude(include.Groups["rest"].Value, source, i + 1, chain);
            string where = $"{source} line {i + 1}";
            if (chain.Contains(path))
                Fail($"include cycle {string.Join(" -> ", chain)} -> {path} ({where})", chain);
            if (chain.Count >= MaxIncludeDepth)
                Fail($"includes nested deeper than {MaxIncludeDepth} at {where}", chain);
            if (path.Contains("{{", StringComparison.Ordinal))
                Fail($"#include path \"{path}\" at {where} holds a placeholder no include value of {source} bound", chain);
            string fragment;
            try
            {
                fragment = read(path);
            }
            catch (Exception e) when (e is FileNotFoundException or ArgumentException)
            {
                throw new PtxTemplateException($"PTX include failed at {where}: cannot read \"{path}\": {e.Message}{ChainNote(chain)}", [], []);
            }
            // NOTE: the line's values bind the fragment's own text first (its include lines included), then its
            // includes are composed: a value can choose a nested fragment or pass itself on, and never leaks past it.
            fragment = SubstituteIncludeValues(fragment, values, path, where, chain);
            chain.Add(path);
            string composed = ComposeFile(fragment, path, read, chain);
            chain.RemoveAt(chain.Count - 1);
            sb.Append(composed.TrimEnd('\n', '\r'));
            if (cr) sb.Append('\r');
        }
        return sb.ToString();
    }

    private static (string Path, Dictionary<string, string> Values) ParseInclude(string rest, string source, int line, List<string> chain)
    {
        string where = $"{source} line {line}";
        Match path = IncludePathRegex().Match(rest);
        if (!path.Success)
            Fail($"malformed #include at {where}: expected #include \"Family/fragments/name.ptx\" [NAME=value ...]", chain);
        string args = path.Groups["args"].Value;
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        int at = 0;
        while (true)
        {
            Match arg = IncludeArgRegex().Match(args, at);
            if (!arg.Success || arg.Length == 0 && !arg.Groups["end"].Success)
                Fail($"malformed #include value at {where}, column {at + 1} of \"{args.Trim()}\": expected NAME=value or NAME=\"value\"", chain);
            if (arg.Groups["end"].Success || arg.Groups["comment"].Success) break;
            string name = arg.Groups["name"].Value;
            string value = arg.Groups["quoted"].Success
                ? Regex.Replace(arg.Groups["quoted"].Value, """\\(.)""", "$1")
                : arg.Groups["bare"].Value;
            if (!values.TryAdd(name, value)) Fail($"#include at {where} gives {name} twice", chain);
            at = arg.Index + arg.Length;
        }
        return (Normalise(path.Groups["path"].Value), values);
    }

    private static string SubstituteIncludeValues(string fragment, Dictionary<string, string> values, string path, string where, List<string> chain)
    {
        if (values.Count == 0) return fragment;
        IReadOnlyList<string> used = Placeholders(fragment);
        string[] unknown = values.Keys.Where(k => !used.Contains(k)).Order(StringComparer.Ordinal).ToArray();
        if (unknown.Length > 0)
            throw new PtxTemplateException(
                $"PTX include failed at {where}: \"{path}\" has no placeholder for {string.Join(", ", unknown)}{ChainNote(chain)}", [], unknown);
        return PlaceholderRegex().Replace(fragment, m => values.TryGetValue(m.Groups[1].Value, out string? v) ? v : m.Value);
    }

    private static int? FirstIncludeLine(string text)
    {
        int line = 1;
        foreach (string l in text.Split('\n'))
        {
            if (IncludeLineRegex().IsMatch(l.TrimEnd('\r'))) return line;
            line++;
        }
        return null;
    }

    private static string Normalise(string path) => path.Replace('\\', '/').TrimStart('/');

    private static string ChainNote(List<string> chain) => chain.Count > 1 ? $" (include chain {string.Join(" -> ", chain)})" : "";

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void Fail(string message, List<string> chain) =>
        throw new PtxTemplateException($"PTX include failed: {message}{ChainNote(chain)}.", [], []);
}
