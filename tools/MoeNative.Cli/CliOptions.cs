using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using MoeNative.Reference;
using MoeNative.Interop;

namespace MoeNative.Cli;

/// <summary>Where a command computes. <see cref="Auto"/>: the GPU when one is usable, else the CPU (and says so).</summary>
public enum DeviceChoice
{
    Auto,
    Cpu,
    Gpu,
}

/// <summary>A <c>--dtype</c> value; prints as the short name (bf16, fp16, fp32), so help shows <c>[default: bf16]</c>.</summary>
public readonly record struct DtypeValue(ScalarType Type)
{
    public override string ToString() => Type.ShortName();
}

/// <summary>A list of token counts; prints comma-separated, as it is typed (<c>[default: 1,128,1024]</c>).</summary>
public sealed record TokenList(int[] Values)
{
    public override string ToString() => string.Join(",", Values);
}

/// <summary>
/// The options several commands share, one spelling and one alias each (see <see cref="Names"/>), with parsers that
/// turn bad values into one-line parse errors. Help names say what is typed: one value <c>&lt;a|b&gt;</c>, a list
/// <c>&lt;a[,b...]&gt;</c>.
/// </summary>
internal static class CliOptions
{
    /// <summary>The alias scheme, the same in every command: -c config, -t seqlen, -o output, -w weights, -i input,
    /// -g grad-output, -l layer, -s seed. Long names only for the rest.</summary>
    public static class Names
    {
        public const string Config = "-c", SeqLen = "-t", Output = "-o", Weights = "-w", Input = "-i", GradOutput = "-g",
            Layer = "-l", Seed = "-s";
    }

    public const string DtypeHelpName = "bf16|fp16|fp32";

    /// <summary><c>-c, --config</c>: a preset name or a Hugging Face config.json; <paramref name="defaultText"/> (when
    /// the default depends on the device) is appended to the description.</summary>
    public static Option<string?> Config(string? defaultText = null) => new("--config", Names.Config)
    {
        Description = $"Preset ({string.Join(", ", MoeConfig.PresetNames)}) or a Hugging Face config.json (or its folder)." +
            (defaultText is null ? "" : " " + defaultText),
        HelpName = "NAME|config.json",
    };

    /// <summary><c>-w, --weights FILE|DIR</c>: a checkpoint (a .safetensors file or a folder of shards with its index), required.</summary>
    public static Option<string> Weights(string description) => new("--weights", Names.Weights)
    {
        Description = description,
        HelpName = "FILE|DIR",
        Required = true,
    };

    /// <summary><c>-t, --seqlen T</c>: one token count, positive.</summary>
    public static Option<int?> SeqLen(string description) => new("--seqlen", Names.SeqLen)
    {
        Description = description,
        HelpName = "T",
        CustomParser = r =>
        {
            string text = Single(r);
            return int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int value) && value > 0
                ? value
                : Fail<int?>(r, $"--seqlen: '{text}' is not a positive integer (T, tokens).");
        },
    };

    /// <summary><c>-t, --seqlen T[,T...]</c>: a comma-separated list of positive token counts.</summary>
    public static Option<TokenList> SeqLens(int[] defaultValue, string description) => new("--seqlen", Names.SeqLen)
    {
        Description = description,
        HelpName = "T[,T...]",
        DefaultValueFactory = _ => new TokenList(defaultValue),
        CustomParser = r =>
        {
            var values = new List<int>();
            foreach (string part in Single(r).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int value) || value <= 0)
                {
                    return Fail<TokenList>(r, $"--seqlen: '{part}' is not a positive integer (T, tokens).");
                }
                values.Add(value);
            }
            return values.Count > 0 ? new TokenList([.. values]) : Fail<TokenList>(r, "--seqlen: expected at least one T.");
        },
    };

    /// <summary>A comma-separated list of non-negative integers, e.g. <c>0,1,5</c> (help: <c>N[,N...]</c>).</summary>
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
                if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int value))
                {
                    return Fail<int[]>(r, $"{name}: '{part}' is not a non-negative integer.");
                }
                values.Add(value);
            }
            return values.Count > 0 ? values.ToArray() : Fail<int[]>(r, $"{name}: expected at least one value.");
        },
    };

    /// <summary><c>--dtype bf16|fp16|fp32</c> with a default (help: <c>[default: bf16]</c>).</summary>
    public static Option<DtypeValue> Dtype(ScalarType defaultValue, string description) => new("--dtype")
    {
        Description = description,
        HelpName = DtypeHelpName,
        DefaultValueFactory = _ => new DtypeValue(defaultValue),
        CustomParser = r => new DtypeValue(ParseDtype(r)),
    };

    /// <summary><c>--dtype bf16|fp16|fp32</c> without a fixed default (the description says what absent means).</summary>
    public static Option<DtypeValue?> OptionalDtype(string description) => new("--dtype")
    {
        Description = description,
        HelpName = DtypeHelpName,
        CustomParser = r => new DtypeValue(ParseDtype(r)),
    };

    /// <summary><c>--device cpu|gpu</c>; absent = <see cref="DeviceChoice.Auto"/> (read it with <c>?? DeviceChoice.Auto</c>).</summary>
    public static Option<DeviceChoice?> Device() => new("--device")
    {
        Description = "Where to compute. Default: the GPU when one is usable, else the CPU (with a note saying why).",
        HelpName = "cpu|gpu",
        CustomParser = r => Single(r).ToLowerInvariant() switch
        {
            "cpu" => (DeviceChoice?)DeviceChoice.Cpu,
            "gpu" or "cuda" => DeviceChoice.Gpu,
            "auto" => DeviceChoice.Auto,
            var other => Fail<DeviceChoice?>(r, $"--device: unknown device '{other}'; expected cpu or gpu."),
        },
    };

    /// <summary><c>-s, --seed N</c>.</summary>
    public static Option<int> Seed(int defaultValue, string description) => new("--seed", Names.Seed)
    {
        Description = description,
        HelpName = "N",
        DefaultValueFactory = _ => defaultValue,
    };

    /// <summary><c>-o, --output PATH</c>: the file or folder a command writes.</summary>
    public static Option<T> Output<T>(string description, string helpName, bool required) => new("--output", Names.Output)
    {
        Description = description,
        HelpName = helpName,
        Required = required,
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
            return Fail<ScalarType>(result, $"--dtype: unknown dtype '{text}'; expected bf16, fp16 or fp32.");
        }
    }

    /// <summary>A tolerance as every command prints it: <c>1e-2</c>, <c>1e-5</c>, <c>1.41e-2</c>.</summary>
    public static string Tolerance(double value) => value.ToString("0.##e0", CultureInfo.InvariantCulture);

    private static string Single(ArgumentResult result) => result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";

    private static T Fail<T>(ArgumentResult result, string message)
    {
        result.AddError(message);
        return default!;
    }
}
