using System.CommandLine;

namespace MoeNative.Cli.Commands;

public static class BenchCommand
{
    public static Command Create(CliConsole console)
    {
        var command = new Command("bench", "(not yet available)");
        command.SetAction(_ => CliApp.Guard(console, () => throw new CliUsageException("'bench' is not available yet")));
        return command;
    }
}
