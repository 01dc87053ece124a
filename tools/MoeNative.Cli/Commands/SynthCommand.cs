using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using MoeNative.Reference;
using MoeNative.Reference.IO;
using MoeNative.Interop;

namespace MoeNative.Cli.Commands;

/// <summary>
/// <c>synth</c>: writes a synthetic checkpoint folder (config.json, one shard per layer, index) with random weights
/// in the Hugging Face per-expert or the fused layout, generated while writing: for load tests on any machine
/// (nothing downloaded).
/// </summary>
public static class SynthCommand
{
    public static Command Create(CliConsole console)
    {
        Option<string?> config = CliOptions.Config();
        config.Required = true;
        var output = CliOptions.Output<string>("Folder to write (created if missing).", "DIR", required: true);
        var layers = new Option<int>("--layers") { Description = "Number of MoE decoder layers.", DefaultValueFactory = _ => 1 };
        var layout = new Option<string>("--layout")
        {
            Description = "per-expert (Hugging Face experts.{e}.gate_proj.weight ...) or fused (experts.gate_up_proj, experts.down_proj).",
            HelpName = "per-expert|fused",
            DefaultValueFactory = _ => "per-expert",
        };
        layout.AcceptOnlyFromAmong("per-expert", "fused");
        var dtype = CliOptions.Dtype(ScalarType.BFloat16, "dtype of the stored tensors.");
        var seed = CliOptions.Seed(1, "Seed of the weights.");
        var command = new Command("synth", "Write a synthetic checkpoint (random MoE layers, HF names, sharded with an index) for load tests.")
        {
            config, output, layers, layout, dtype, seed,
        };
        command.SetAction(parse => CliApp.Guard(console, () => Run(console, parse.GetRequiredValue(config)!, parse.GetRequiredValue(output),
            parse.GetValue(layers), parse.GetValue(layout)!, parse.GetValue(dtype)!.Type, parse.GetValue(seed))));
        return command;
    }

    public static int Run(CliConsole console, string configText, string output, int layers, string layout, ScalarType dtype, int seed)
    {
        if (layers < 1) throw new CliUsageException($"--layers must be at least 1, got {layers}");
        if (File.Exists(output)) throw new CliUsageException($"--output {output} is a file; give a folder");
        MoeConfig config = MoeConfig.Resolve(configText);
        CheckpointLayout kind = layout == "fused" ? CheckpointLayout.Fused : CheckpointLayout.PerExpert;
        var clock = Stopwatch.StartNew();
        long bytes = SyntheticCheckpoint.Write(output, config, layers, SafetensorsDTypes.From(dtype), kind, seed,
            l => console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  layer {l} written ({clock.Elapsed.TotalSeconds:0.0} s)")));
        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"synth: {config}; {layers} layers, {layout}, {dtype.ShortName()}: {bytes / 1e9:0.000} GB of tensors in {clock.Elapsed.TotalSeconds:0.0} s -> {output}"));
        return CliApp.ExitOk;
    }
}
