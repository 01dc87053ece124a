using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;
using MoeNative.Reference.IO;
using Spectre.Console;

namespace MoeNative.Cli.Commands;

/// <summary>
/// <c>load</c>: every MoE layer of a checkpoint onto the GPU (memory-mapped, pinned staging, converted on the GPU when
/// the file's dtype differs) with a progress bar; prints time, GB/s and host memory; with <c>--seqlen T</c> runs the
/// fused block on random hidden states through every loaded layer.
/// </summary>
public static class LoadCommand
{
    public static Command Create(CliConsole console)
    {
        Option<string?> config = CliOptions.Config();
        config.Required = true;
        var weights = CliOptions.Weights("A checkpoint folder (shards with model.safetensors.index.json) or a .safetensors file with model.layers.L.mlp.* names.");
        var dtype = CliOptions.OptionalDtype("Device dtype. Default: the dtype of the first layer's gate.weight.");
        var layers = CliOptions.IntList("--layers", [], "Decoder layers to load, e.g. 0,1,5 (default: every MoE layer).");
        var chunk = new Option<int>("--chunk-mib") { Description = "Pinned staging chunk (two are used), MiB.", DefaultValueFactory = _ => CheckpointLoadOptions.DefaultChunkBytes >> 20 };
        var seqlen = new Option<int>("--seqlen", CliOptions.Names.SeqLen) { Description = "After loading, run the fused block on T random tokens through every layer (0: load only).", HelpName = "T", DefaultValueFactory = _ => 0 };
        var backward = new Option<bool>("--backward") { Description = "With --seqlen: also run the backward of every layer." };
        var seed = CliOptions.Seed(1, "Seed of the random hidden states.");
        var command = new Command("load", "Load every MoE layer of a checkpoint onto the GPU (progress, GB/s, host memory); optionally run each layer.")
        {
            config, weights, dtype, layers, chunk, seqlen, backward, seed,
        };
        command.SetAction(parse => CliApp.Guard(console, () => Run(console, parse.GetRequiredValue(config)!, parse.GetRequiredValue(weights),
            parse.GetValue(dtype)?.Type, parse.GetValue(layers) is { Length: > 0 } l ? l : null, parse.GetValue(chunk), parse.GetValue(seqlen), parse.GetValue(backward), parse.GetValue(seed))));
        return command;
    }

    public static int Run(CliConsole console, string configText, string weights, ScalarType? dtypeOption, int[]? layers,
        int chunkMiB, int seqlen, bool backward, int seed)
    {
        if (!File.Exists(weights) && !Directory.Exists(weights)) throw new CliUsageException($"--weights: not found: {weights}");
        if (chunkMiB is < 1 or > 1024) throw new CliUsageException($"--chunk-mib must be in [1, 1024], got {chunkMiB}");
        if (seqlen < 0) throw new CliUsageException($"--seqlen must be non-negative, got {seqlen}");
        MoeConfig config = MoeConfig.Resolve(configText);
        if (seqlen > 0) MoeLimits.CheckDeviceTokens(config, seqlen, "--seqlen");
        int? firstLayer;
        using (SafetensorsCollection files = SafetensorsCollection.Open(weights))
            firstLayer = layers is { Length: > 0 } ? layers[0] : MoeCheckpointLayout.MoeLayers(files).Cast<int?>().FirstOrDefault();
        ScalarType dtype = dtypeOption ?? RunCommand.DetectDType(weights, firstLayer);
        DeviceSelection.UseGpu(console, DeviceChoice.Gpu, "load");

        using CudaContext context = CudaContext.Create(0);
        console.Out.WriteLine($"load: {config}; {dtype.ShortName()} onto {context.Name}; staging 2 x {chunkMiB} MiB pinned");
        Qwen3MoeModelWeights model = LoadWithProgress(console, context, config, weights, dtype, layers, chunkMiB << 20);
        using (model)
        {
            CheckpointLoadStats s = model.LoadStats;
            console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"loaded {model.Layers.Count} layers ({string.Join(",", model.Layers)}): {s.FileBytes / 1e9:0.000} GB of file in {s.Elapsed.TotalSeconds:0.00} s = {s.GigabytesPerSecond:0.00} GB/s; "
                + $"{s.DeviceBytes / 1e9:0.000} GB on the device"));
            console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"host memory: anonymous RSS {Mb(s.HostBaselineBytes)} before, peak {Mb(s.HostPeakBytes)} during the load (+{Mb(s.HostPeakBytes - s.HostBaselineBytes)}; pinned staging {Mb(s.PinnedBytes)}); "
                + $"peak RSS incl. mapped file pages {Mb(ProcessMemory.PeakResidentBytes())}"));
            if (seqlen > 0) return RunLayers(console, model, seqlen, backward, seed);
        }
        return CliApp.ExitOk;
    }

    private static Qwen3MoeModelWeights LoadWithProgress(CliConsole console, CudaContext context, MoeConfig config, string weights,
        ScalarType dtype, int[]? layers, int chunkBytes)
    {
        if (!console.IsInteractive)
        {
            int reported = 0; // one line per completed layer
            return Qwen3MoeModelWeights.Load(context, config, weights, dtype, new CheckpointLoadOptions
            {
                ChunkBytes = chunkBytes,
                Layers = layers,
                Progress = p =>
                {
                    if (p.LayersDone == reported) return;
                    reported = p.LayersDone;
                    console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"  layer {p.Layer} loaded: {p.LayersDone}/{p.LayerCount}, {p.BytesDone / 1e9:0.000}/{p.BytesTotal / 1e9:0.000} GB, {p.GigabytesPerSecond:0.00} GB/s"));
                },
            });
        }
        Qwen3MoeModelWeights? model = null;
        console.Ansi.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                ProgressTask task = ctx.AddTask("loading", maxValue: 1);
                model = Qwen3MoeModelWeights.Load(context, config, weights, dtype, new CheckpointLoadOptions
                {
                    ChunkBytes = chunkBytes,
                    Layers = layers,
                    Progress = p =>
                    {
                        task.MaxValue = p.BytesTotal;
                        task.Value = p.BytesDone;
                        task.Description = $"layer {p.Layer} ({p.LayersDone}/{p.LayerCount} done)";
                    },
                });
                task.StopTask();
            });
        return model!;
    }

    private static int RunLayers(CliConsole console, Qwen3MoeModelWeights model, int tokens, bool backward, int seed)
    {
        MoeConfig c = model.Config;
        float[] x = TensorRandom.Normal((long)tokens * c.HiddenSize, seed, 1f, model.DType);    // [T,H]
        float[] dY = TensorRandom.Normal((long)tokens * c.HiddenSize, seed + 1, 1f, model.DType); // [T,H]
        var table = new Table().AddColumns("layer", "forward ms", backward ? "backward ms" : "", "max |y|", "finite");
        int bad = 0;
        using (var warmUp = new Qwen3MoeFusedBlock(model.Layer(model.Layers[0]))) // JIT of every kernel, once per context
        {
            warmUp.Forward(x, tokens);
            if (backward) warmUp.Backward(dY);
        }
        foreach (int layer in model.Layers)
        {
            using var block = new Qwen3MoeFusedBlock(model.Layer(layer));
            var clock = Stopwatch.StartNew();
            MoeIntermediates fwd = block.Forward(x, tokens);
            double fwdMs = clock.Elapsed.TotalMilliseconds;
            string bwdMs = "";
            bool finite = fwd.Output.All(float.IsFinite);
            if (backward)
            {
                clock.Restart();
                MoeGradients g = block.Backward(dY);
                bwdMs = clock.Elapsed.TotalMilliseconds.ToString("0.0", CultureInfo.InvariantCulture);
                finite &= g.HiddenStates.All(float.IsFinite) && g.GateUpProj.All(float.IsFinite) && g.DownProj.All(float.IsFinite) && g.Gate.All(float.IsFinite);
            }
            if (!finite) bad++;
            float max = fwd.Output.Length == 0 ? 0 : fwd.Output.Max(MathF.Abs);
            table.AddRow(layer.ToString(CultureInfo.InvariantCulture), fwdMs.ToString("0.0", CultureInfo.InvariantCulture), bwdMs,
                max.ToString("0.000", CultureInfo.InvariantCulture), finite ? "yes" : "NO");
        }
        console.Out.WriteLine($"ran the fused block on T={tokens} random tokens (seed {seed}) through every layer (after one warm-up call; host API: times include the host<->device copies):");
        console.Ansi.Write(table);
        if (bad > 0)
        {
            console.WriteError($"{bad} layers produced non-finite values");
            return CliApp.ExitCheckFailed;
        }
        return CliApp.ExitOk;
    }

    private static string Mb(long bytes) => bytes < 0 ? "n/a" : string.Create(CultureInfo.InvariantCulture, $"{bytes / 1048576.0:0} MiB");
}
