using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace MoeNative.Cli;

/// <summary>Where a command computes. <see cref="Auto"/>: the GPU when one is usable, else the CPU (and says so).</summary>
public enum DeviceChoice
{
    Auto,
    Cpu,
    Gpu,
}

/// <summary>Options shared by several commands, with parsers that turn bad values into one-line parse errors.</summary>
internal static class CliOptions
{
    public static Option<ScalarType> Dtype(ScalarType defaultValue, string description) => new("--dtype")
    {
        Description = description + " One of bf16, fp16, fp32.",
        HelpName = "bf16|fp16|fp32",
        DefaultValueFactory = _ => defaultValue,
        CustomParser = ParseDtype,
    };

    public static Option<ScalarType?> OptionalDtype(string description) => new("--dtype")
    {
        Description = description + " One of bf16, fp16, fp32.",
        HelpName = "bf16|fp16|fp32",
        CustomParser = r => ParseDtype(r),
    };

    /// <summary><c>--device cpu|gpu</c>; absent = <see cref="DeviceChoice.Auto"/> (read it with <c>?? DeviceChoice.Auto</c>).</summary>
    public static Option<DeviceChoice?> Device() => new("--device")
    {
        Description = "cpu or gpu. Default: the GPU when one is usable, else the CPU (with a note saying why).",
        HelpName = "cpu|gpu",
        CustomParser = r => Single(r).ToLowerInvariant() switch
        {
            "cpu" => (DeviceChoice?)DeviceChoice.Cpu,
            "gpu" or "cuda" => DeviceChoice.Gpu,
            "auto" => DeviceChoice.Auto,
            var other => Fail<DeviceChoice?>(r, $"Unknown device '{other}'; expected cpu or gpu."),
        },
    };

    /// <summary>A comma-separated list of positive integers, e.g. <c>1,128,1024</c>.</summary>
    public static Option<int[]> IntList(string name, int[] defaultValue, string description) => new(name)
    {
        Description = description,
        HelpName = "N[,N...]",
        DefaultValueFactory = _ => defaultValue,
        CustomParser = r =>
        {
            var values = new List<int>();
            foreach (string part in Single(r).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int value) || value < 0)
                {
                    return Fail<int[]>(r, $"{name}: '{part}' is not a non-negative integer.");
                }
                values.Add(value);
            }
            return values.Count > 0 ? values.ToArray() : Fail<int[]>(r, $"{name}: expected at least one value.");
        },
    };

    public static ScalarType ParseDtype(ArgumentResult result)
    {
        string text = Single(result);
        try
        {
            return ScalarTypes.Parse(text);
        }
        catch (ArgumentException)
        {
            return Fail<ScalarType>(result, $"Unknown dtype '{text}'; expected bf16, fp16 or fp32.");
        }
    }

    private static string Single(ArgumentResult result) => result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";

    private static T Fail<T>(ArgumentResult result, string message)
    {
        result.AddError(message);
        return default!;
    }
}
