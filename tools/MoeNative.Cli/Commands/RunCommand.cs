using System.CommandLine;

namespace MoeNative.Cli.Commands;

public static class RunCommand
{
    public static Command Create(CliConsole console)
    {
        var command = new Command("run", "(not yet available)");
        command.SetAction(_ => CliApp.Guard(console, () => throw new CliUsageException("'run' is not available yet")));
        return command;
    }
}
