using System.CommandLine;
using System.Reflection;
using System.Text.Json;
using MoeNative.Cli.Commands;

namespace MoeNative.Cli;

/// <summary>
/// Entry point of the <c>moenative</c> command line. <c>Invoke</c> parses, runs one command and returns the
/// exit code; it never throws: an error is one line <c>error: ...</c> on the error writer.
/// Exit codes: 0 success, 1 a check failed (verify out of tolerance), 2 bad arguments or input files,
/// 3 a runtime failure (CUDA, cuBLAS, JIT, I/O). <c>MOENATIVE_CLI_STACKTRACE=1</c> prints the full exception too.
/// </summary>
public static class CliApp
{
    public const int ExitOk = 0;
    public const int ExitCheckFailed = 1;
    public const int ExitUsage = 2;
    public const int ExitRuntimeError = 3;

    /// <summary>Runs the CLI on the process console.</summary>
    public static int Invoke(string[] args) => Invoke(args, CliConsole.ForProcess());

    /// <summary>Runs the CLI in-process writing to <paramref name="output"/> (and errors to <paramref name="error"/>,
    /// default the same writer): no colours, no live displays.</summary>
    public static int Invoke(string[] args, TextWriter output, TextWriter? error = null) =>
        Invoke(args, CliConsole.ForWriters(output, error ?? output));

    public static int Invoke(string[] args, CliConsole console)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(console);
        try
        {
            RootCommand root = BuildRoot(console);
            ParseResult parse = root.Parse(args.Length == 0 ? ["--help"] : args);
            if (parse.Errors.Count > 0)
            {
                string command = string.Join(' ', CommandPath(parse));
                // NOTE: an unknown word yields "Required command was not provided" AND "Unrecognized ... 'word'": keep all, one line.
                string messages = string.Join("; ", parse.Errors.Select(e => e.Message.TrimEnd('.')).Distinct());
                console.WriteError($"{messages} (see '{command} --help')");
                return ExitUsage;
            }
            var invocation = new InvocationConfiguration
            {
                Output = console.Out,
                Error = console.Error,
                EnableDefaultExceptionHandler = false,
            };
            return parse.Invoke(invocation);
        }
        catch (Exception e)
        {
            return Report(console, e);
        }
    }

    /// <summary>The command tree. Each command's action goes through <see cref="Guard"/>.</summary>
    public static RootCommand BuildRoot(CliConsole console)
    {
        var root = new RootCommand(
            "MoeNative: Mixture-of-Experts expert layers (Qwen3-MoE) on NVIDIA GPUs with hand-written PTX, " +
            "checked against a C# reference of the Hugging Face block.");
        root.Subcommands.Add(InfoCommand.Create(console));
        root.Subcommands.Add(RunCommand.Create(console));
        root.Subcommands.Add(LoadCommand.Create(console));
        root.Subcommands.Add(SynthCommand.Create(console));
        root.Subcommands.Add(VerifyCommand.Create(console));
        root.Subcommands.Add(BenchCommand.Create(console));
        root.Subcommands.Add(TuneCommand.Create(console));
        root.Subcommands.Add(PtxCommand.Create(console));
        return root;
    }

    /// <summary>Runs a command body, turning every exception into one error line and an exit code.</summary>
    public static int Guard(CliConsole console, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e)
        {
            return Report(console, e);
        }
    }

    internal static string Version =>
        typeof(CliApp).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
        ?? "0.0.0";

    private static int Report(CliConsole console, Exception e)
    {
        while (e is TargetInvocationException or AggregateException { InnerExceptions.Count: 1 } && e.InnerException is not null)
        {
            e = e.InnerException;
        }
        console.WriteError(e is CliUsageException or CliRuntimeException ? e.Message : Describe(e));
        if (Environment.GetEnvironmentVariable("MOENATIVE_CLI_STACKTRACE") == "1")
        {
            console.Error.WriteLine(e.ToString());
        }
        return IsUsageError(e) ? ExitUsage : ExitRuntimeError;
    }

    private static bool IsUsageError(Exception e) => e is CliUsageException or ArgumentException or FileNotFoundException
        or DirectoryNotFoundException or InvalidDataException or FormatException or JsonException or KeyNotFoundException
        or NotSupportedException or UnauthorizedAccessException or InsufficientMemoryException;

    private static string Describe(Exception e) => e switch
    {
        FileNotFoundException f when f.FileName is not null && !e.Message.Contains(f.FileName, StringComparison.Ordinal)
            => $"{e.Message} ({f.FileName})",
        ArgumentException a => WithoutParameterSuffix(a),
        IOException or InvalidDataException or FormatException or JsonException
            or KeyNotFoundException or NotSupportedException or InsufficientMemoryException => e.Message,
        _ => $"{e.GetType().Name}: {e.Message}",
    };

    /// <summary>The message without the " (Parameter 'name')" that .NET appends to an <see cref="ArgumentException"/>
    /// (the message itself names what was wrong); an out-of-range value's "Actual value was X." stays.</summary>
    internal static string WithoutParameterSuffix(ArgumentException e) =>
        e.ParamName is null ? e.Message : e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal);

    private static IEnumerable<string> CommandPath(ParseResult parse)
    {
        var names = new Stack<string>();
        for (var result = parse.CommandResult; result is not null; result = result.Parent as System.CommandLine.Parsing.CommandResult)
        {
            names.Push(result.Parent is null ? "moenative" : result.Command.Name);
        }
        return names;
    }
}

/// <summary>A bad option value or input the user can fix; reported as one line, exit code 2.</summary>
public sealed class CliUsageException(string message) : Exception(message);

/// <summary>The machine cannot do what was asked (e.g. no usable GPU); reported as one line, exit code 3.</summary>
public sealed class CliRuntimeException(string message) : Exception(message);
