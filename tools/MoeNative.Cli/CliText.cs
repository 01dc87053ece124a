using System.Globalization;
using System.Text;

namespace MoeNative.Cli;

/// <summary>
/// Makes text from files (tensor names, paths, JSON) safe to print on one terminal line: control characters
/// (C0, DEL, C1: ESC starts ANSI sequences) and bidirectional overrides are escaped as <c>\xNN</c> / <c>\uNNNN</c>,
/// a word longer than <see cref="MaxWord"/> characters keeps its start and end around a count of what was left out,
/// and the whole line is capped at <see cref="MaxLine"/> characters.
/// </summary>
internal static class CliText
{
    public const int MaxWord = 160;
    public const int MaxLine = 2000;
    private const int WordHead = 100, WordTail = 40;

    public static string Sanitize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var sb = new StringBuilder(Math.Min(text.Length, MaxLine + 64));
        int start = 0;
        while (start < text.Length && sb.Length <= MaxLine)
        {
            int end = text.IndexOf(' ', start);
            if (end < 0) end = text.Length;
            AppendWord(sb, text.AsSpan(start, end - start));
            if (end < text.Length) sb.Append(' ');
            start = end + 1;
        }
        if (sb.Length > MaxLine || start < text.Length)
        {
            sb.Length = Math.Min(sb.Length, MaxLine);
            sb.Append(CultureInfo.InvariantCulture, $"... ({text.Length} characters in all)");
        }
        return sb.ToString();
    }

    private static void AppendWord(StringBuilder sb, ReadOnlySpan<char> word)
    {
        if (word.Length <= MaxWord)
        {
            AppendEscaped(sb, word);
            return;
        }
        AppendEscaped(sb, word[..WordHead]);
        sb.Append(CultureInfo.InvariantCulture, $"...[{word.Length - WordHead - WordTail} characters left out]...");
        AppendEscaped(sb, word[^WordTail..]);
    }

    private static void AppendEscaped(StringBuilder sb, ReadOnlySpan<char> text)
    {
        foreach (char c in text)
        {
            if (c < 0x20 || c is >= '\u007F' and <= '\u009F') sb.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:X2}");
            else if (c is >= '\u202A' and <= '\u202E' or >= '\u2066' and <= '\u2069') sb.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:X4}");
            else sb.Append(c);
        }
    }
}
