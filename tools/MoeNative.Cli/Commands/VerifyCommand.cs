using System.CommandLine;

namespace MoeNative.Cli.Commands;

public static class VerifyCommand
{
    public static Command Create(CliConsole console)
    {
        var command = new Command("verify", "(not yet available)");
        command.SetAction(_ => CliApp.Guard(console, () => throw new CliUsageException("'verify' is not available yet")));
        return command;
    }
}
