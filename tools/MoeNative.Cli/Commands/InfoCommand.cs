using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;

namespace MoeNative.Cli.Commands;

/// <summary><c>info</c>: the .NET runtime, and the GPU (name, compute capability, SMs, memory, driver and cuBLAS
/// versions) or exactly why none is usable. Always exit code 0: "no GPU" is an answer, not an error.</summary>
public static class InfoCommand
{
    public static Command Create(CliConsole console)
    {
        var ordinal = new Option<int>("--ordinal")
        {
            Description = "CUDA device ordinal to describe.",
            HelpName = "N",
            DefaultValueFactory = _ => 0,
        };
        var command = new Command("info", "Show the .NET runtime and the GPU, or why no GPU is usable.") { ordinal };
        command.SetAction(parse => CliApp.Guard(console, () => Run(console, parse.GetValue(ordinal))));
        return command;
    }

    public static int Run(CliConsole console, int ordinal)
    {
        // Plain aligned lines (no table padding): easy to read in a log and to grep. Continuation lines of a value
        // start in the value column.
        const int KeyWidth = 13;
        void Row(string key, string value)
        {
            string[] lines = value.Split('\n');
            console.Out.WriteLine(key.PadRight(KeyWidth) + lines[0]);
            foreach (string line in lines.Skip(1))
            {
                console.Out.WriteLine(new string(' ', KeyWidth) + line);
            }
        }

        Row("moenative", CliApp.Version);
        Row(".NET", $"{RuntimeInformation.FrameworkDescription} ({RuntimeInformation.RuntimeIdentifier}, {RuntimeInformation.ProcessArchitecture})");
        Row("runtime", RuntimeEnvironment.GetRuntimeDirectory());
        Row("OS", RuntimeInformation.OSDescription);
        Row("CPU cores", Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture));
        foreach ((string key, string value) in GpuReport.Describe(ordinal))
        {
            Row(key, value);
        }
        return CliApp.ExitOk;
    }
}
