using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;
using MoeNative.Reference.IO;

namespace MoeNative.Cli.Commands;

/// <summary>What <c>run</c> computes.</summary>
/// <param name="Config">Preset name or config.json path (or its folder).</param>
/// <param name="Weights">A .safetensors file or a checkpoint folder (sharded with model.safetensors.index.json, or not).</param>
/// <param name="Layer">Decoder layer L: tensor names get the prefix <c>model.layers.L.mlp.</c>; null = bare names.</param>
/// <param name="Input">Safetensors file holding <c>hidden_states</c> [T,H] or [B,S,H].</param>
/// <param name="GradOutput">Optional safetensors file holding <c>grad_output</c> of the input's shape (runs the backward).</param>
/// <param name="Output">Safetensors file to write (F32 tensors).</param>
/// <param name="Implementation">hf, grouped or fused.</param>
/// <param name="Device">Where to run (fused: GPU only).</param>
/// <param name="DType">Compute/storage dtype; null = the dtype of the checkpoint's <c>gate.weight</c>.</param>
/// <param name="AllowNonFinite">Run on NaN/Inf inputs or weights and write a non-finite result (the exit code is still 1).</param>
public sealed record RunOptions(
    string Config, string Weights, int? Layer, string Input, string? GradOutput, string Output,
    string Implementation, DeviceChoice Device, ScalarType? DType, bool AllowNonFinite = false);

/// <summary>
/// <c>run</c>: one real expert layer of a checkpoint on safetensors tensors. Reads <c>hidden_states</c> (and
/// <c>grad_output</c>), writes <c>output</c>, <c>router_logits</c> and, with a grad, <c>grad_hidden_states</c>,
/// <c>grad_gate</c>, <c>grad_gate_proj</c>, <c>grad_up_proj</c>, <c>grad_down_proj</c>, all F32.
/// hf/grouped run the reference (host GEMMs on the CPU, cuBLAS on the GPU); fused runs the PTX block.
/// </summary>
public static class RunCommand
{
    public static Command Create(CliConsole console)
    {
        Option<string?> config = CliOptions.Config();
        config.Required = true;
        var weights = CliOptions.Weights("Weights: a .safetensors file or a checkpoint folder (shards with model.safetensors.index.json).");
        var layer = new Option<int?>("--layer", CliOptions.Names.Layer)
        {
            Description = "Decoder layer L: reads model.layers.L.mlp.* (default: bare names gate.weight, experts.*).",
            HelpName = "L",
        };
        var input = new Option<string>("--input", CliOptions.Names.Input)
        {
            Description = "Safetensors file with hidden_states [T,H] or [B,S,H].",
            HelpName = "FILE",
            Required = true,
        };
        var gradOutput = new Option<string?>("--grad-output", CliOptions.Names.GradOutput)
        {
            Description = "Safetensors file with grad_output (the input's shape): also writes the five gradients.",
            HelpName = "FILE",
        };
        var output = CliOptions.Output<string>(
            "Safetensors file to write: output, router_logits (+ grad_hidden_states, grad_gate, grad_gate_proj, grad_up_proj, grad_down_proj), all F32.",
            "FILE", required: true);
        var impl = new Option<string>("--impl")
        {
            Description = "hf (the Hugging Face per-expert loop), grouped (the grouped reference) or fused (the PTX block, GPU only).",
            HelpName = "hf|grouped|fused",
            DefaultValueFactory = _ => "hf",
        };
        impl.AcceptOnlyFromAmong("hf", "grouped", "fused");
        var device = CliOptions.Device();
        var dtype = CliOptions.OptionalDtype("Compute dtype. Default: the dtype of the checkpoint's gate.weight.");
        var allowNonFinite = new Option<bool>("--allow-nonfinite")
        {
            Description = "Run on NaN/Inf inputs or weights (refused by default) and write a non-finite result anyway (exit code still 1).",
        };

        var command = new Command("run", "Run one expert layer of a checkpoint on safetensors inputs; write the output (and gradients) as safetensors.")
        {
            config, weights, layer, input, gradOutput, output, impl, device, dtype, allowNonFinite,
        };
        command.SetAction(parse => CliApp.Guard(console, () => Run(console, new RunOptions(
            parse.GetRequiredValue(config)!,
            parse.GetRequiredValue(weights),
            parse.GetValue(layer),
            parse.GetRequiredValue(input),
            parse.GetValue(gradOutput),
            parse.GetRequiredValue(output),
            parse.GetValue(impl)!,
            parse.GetValue(device) ?? DeviceChoice.Auto,
            parse.GetValue(dtype)?.Type,
            parse.GetValue(allowNonFinite)))));
        return command;
    }

    public static int Run(CliConsole console, RunOptions o)
    {
        // ---- validate everything the user typed before any heavy work ---------------------------------------------
        RequireExisting("--weights", o.Weights, folderAllowed: true);
        RequireExisting("--input", o.Input, folderAllowed: false);
        if (o.GradOutput is not null) RequireExisting("--grad-output", o.GradOutput, folderAllowed: false);
        if (o.Layer is < 0) throw new CliUsageException($"--layer must be non-negative, got {o.Layer}");
        OutputPath.Validate(o.Output, InputFiles(o));
        string impl = o.Implementation.Trim().ToLowerInvariant();
        MoeConfig config = MoeConfig.Resolve(o.Config);
        config.RequireExpertLayer(o.Layer);
        ScalarType dtype = o.DType ?? DetectDType(o.Weights, o.Layer);
        bool useGpu = DeviceSelection.UseGpu(console, o.Device, impl == "fused" ? "--impl fused" : null);

        var options = new MoeRunOptions
        {
            Config = o.Config,
            Weights = o.Weights,
            Layer = o.Layer,
            Input = o.Input,
            GradOutput = o.GradOutput,
            Output = o.Output,
            Implementation = impl,
            DType = dtype,
            AllowNonFinite = o.AllowNonFinite,
        };
        string where = useGpu ? "gpu" : "cpu";
        console.Out.WriteLine($"run: {config}; --impl {impl}, {dtype.ShortName()}, {where}{(o.Layer is null ? "" : $", layer {o.Layer}")}{(o.GradOutput is null ? "" : ", forward + backward")}");

        var clock = Stopwatch.StartNew();
        MoeRunSummary summary;
        try
        {
            summary = Compute(console, options, config, impl, useGpu);
        }
        catch (SafetensorsWriteException e)
        {
            throw new CliUsageException($"--output {e.Target}: cannot write ({e.InnerException?.Message ?? e.Message})");
        }
        catch (NonFiniteResultException e)
        {
            console.WriteError(e.Message);
            return CliApp.ExitCheckFailed;
        }

        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"T={summary.Tokens} (hidden_states {Shape(summary.InputShape)}) in {clock.Elapsed.TotalSeconds:0.00} s; wrote {o.Output}:"));
        foreach ((string name, long[] shape) in summary.Written)
        {
            console.Out.WriteLine($"  {name,-20} {Shape(shape)} F32");
        }
        return CliApp.ExitOk;
    }

    private static MoeRunSummary Compute(CliConsole console, MoeRunOptions options, MoeConfig config, string impl, bool useGpu)
    {
        if (impl == "fused")
            return console.Status("running the fused PTX block ...", () => RunFused(options, config));
        if (!useGpu)
            return console.Status($"running the {impl} reference on the host ...", () => MoeLayerRunner.Run(options));
        using CudaContext context = CudaContext.Create(0);
        using var cublas = new CublasGemm(context);
        return console.Status($"running the {impl} reference on cuBLAS ...", () => MoeLayerRunner.Run(options, cublas));
    }

    /// <summary>Every file the run reads, by option: an output must be none of them.</summary>
    private static IEnumerable<(string Option, string Path)> InputFiles(RunOptions o)
    {
        foreach (string f in SafetensorsCollection.SourceFiles(o.Weights)) yield return ("--weights", f);
        yield return ("--input", o.Input);
        if (o.GradOutput is not null) yield return ("--grad-output", o.GradOutput);
        if (MoeConfig.SourceFile(o.Config) is { } configFile) yield return ("--config", configFile);
    }

    /// <summary>The fused PTX block on the same files and names as <see cref="MoeLayerRunner.Run"/>, the layer loaded
    /// straight to the device (<see cref="Qwen3MoeDeviceWeights.FromSafetensors"/>).</summary>
    internal static MoeRunSummary RunFused(MoeRunOptions options, MoeConfig config)
    {
        (float[] x, long[] shape, float[]? dY) = MoeLayerRunner.LoadActivations(options, config);
        int tokens = checked((int)(x.LongLength / config.HiddenSize));
        MoeLimits.CheckDeviceTokens(config, tokens, "hidden_states");

        using CudaContext context = CudaContext.Create(0);
        // The layer goes to the device in its storage dtype through pinned staging (converted on the GPU): no host
        // float copy of the weights; each staged chunk is checked for non-finite values unless they are allowed.
        using Qwen3MoeDeviceWeights weights = Qwen3MoeDeviceWeights.FromSafetensors(context, config, options.Weights, options.DType,
            options.Layer, new CheckpointLoadOptions { RequireFinite = !options.AllowNonFinite });
        using var block = new Qwen3MoeFusedBlock(weights);
        MoeIntermediates fwd = block.Forward(x, tokens);
        MoeGradients? g = dY is null ? null : block.Backward(dY);
        var metadata = new Dictionary<string, string>
        {
            ["producer"] = "MoeNative.Blocks",
            ["implementation"] = "fused",
            ["dtype"] = options.DType.ShortName(),
            ["device"] = context.Name,
        };
        return MoeLayerRunner.WriteOutputs(options.Output, config, shape, fwd, g, metadata, options.AllowNonFinite);
    }

    /// <summary>The dtype of the checkpoint's router weight (F32/F16/BF16); bf16 when it cannot be read (the run
    /// itself then reports the missing or mistyped tensor).</summary>
    internal static ScalarType DetectDType(string weights, int? layer)
    {
        try
        {
            using SafetensorsCollection files = SafetensorsCollection.Open(weights);
            string name = MoeCheckpoint.Prefix(layer) + "gate.weight";
            if (!files.Contains(name)) return ScalarType.BFloat16;
            return files.Find(name).Info.DType?.ToScalarType() ?? ScalarType.BFloat16;
        }
        catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException)
        {
            return ScalarType.BFloat16;
        }
    }

    private static void RequireExisting(string option, string path, bool folderAllowed)
    {
        if (File.Exists(path)) return;
        if (Directory.Exists(path))
        {
            if (folderAllowed) return;
            throw new CliUsageException($"{option} {path} is a folder; expected a .safetensors file");
        }
        throw new CliUsageException($"{option}: file not found: {path}");
    }

    private static string Shape(long[] shape) => "[" + string.Join(",", shape) + "]";
}
