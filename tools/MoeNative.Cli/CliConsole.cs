using Spectre.Console;

namespace MoeNative.Cli;

/// <summary>
/// Where a command writes: <see cref="Ansi"/> (Spectre: tables, status, progress) and <see cref="Out"/> for results,
/// <see cref="Error"/> for the one-line error. In-process callers (tests) pass plain writers and get a console
/// without colours, animation or interaction, 160 columns wide.
/// </summary>
public sealed class CliConsole
{
    private CliConsole(IAnsiConsole ansi, TextWriter output, TextWriter error, bool interactive)
    {
        Ansi = ansi;
        Out = output;
        Error = error;
        IsInteractive = interactive;
    }

    public IAnsiConsole Ansi { get; }

    public TextWriter Out { get; }

    public TextWriter Error { get; }

    /// <summary>True when stdout is a terminal: live status and progress displays render.</summary>
    public bool IsInteractive { get; }

    /// <summary>The process's console; tables are <c>COLUMNS</c> (default 160) wide when stdout is redirected.</summary>
    public static CliConsole ForProcess()
    {
        var ansi = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
        bool interactive = !Console.IsOutputRedirected;
        if (!interactive)
        {
            ansi.Profile.Width = int.TryParse(Environment.GetEnvironmentVariable("COLUMNS"), out int columns) && columns >= 40
                ? columns
                : 160;
        }
        return new CliConsole(ansi, Console.Out, Console.Error, interactive);
    }

    /// <summary>A console over plain writers (tests, embedding): no ANSI codes, no live displays.</summary>
    public static CliConsole ForWriters(TextWriter output, TextWriter error)
    {
        var ansi = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(output),
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
        });
        ansi.Profile.Width = 160;
        return new CliConsole(ansi, output, error, interactive: false);
    }

    /// <summary>Writes <c>error: message</c> as one line (newlines folded, <see cref="CliText.Sanitize"/>d: control and
    /// ANSI characters escaped, overlong words such as a 1 MiB tensor name shortened) to <see cref="Error"/>.</summary>
    public void WriteError(string message) => Error.WriteLine("error: " + CliText.Sanitize(OneLine(message)));

    /// <summary>Writes a one-line notice such as "no GPU: running the CPU path because ...".</summary>
    public void WriteNote(string message) => Out.WriteLine(OneLine(message));

    /// <summary>Runs <paramref name="work"/> under a Spectre status spinner when interactive; else prints the text once.</summary>
    public T Status<T>(string text, Func<T> work)
    {
        if (!IsInteractive)
        {
            Out.WriteLine(text);
            return work();
        }
        return Ansi.Status().Start(Markup.Escape(text), _ => work());
    }

    internal static string OneLine(string text)
    {
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return string.Join(" | ", lines);
    }
}
