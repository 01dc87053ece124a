using System.CommandLine;
using System.Globalization;
using MoeNative.Blocks;
using MoeNative.Blocks.Benchmarking;
using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;
using Spectre.Console;

namespace MoeNative.Cli.Commands;

/// <summary>What <c>bench</c> times.</summary>
public sealed record BenchOptions(
    string Config, int[] SeqLens, ScalarType DType, bool Backward, string? Json,
    bool Reference, bool Graph, bool Autotune, int Seed, bool Gemm = false, bool Inference = false, bool FuseDSwiGlu = false,
    int? ExpertParallelRanks = null, DecodeMode Decode = DecodeMode.Auto);

/// <summary>
/// <c>bench</c>: times the whole fused block (X on the device to Y on the device; with <c>--backward</c> also
/// forward+backward) with CUDA events, warm-up, the median of many replays and fresh inputs, plus the grouped
/// reference on cuBLAS for context (<see cref="BlockBenchmark"/>); prints ms, TFLOP/s, GB/s and % of the floor
/// (FLOPs at the card's tensor rate, bytes of the experts hit plus activations at its bandwidth); writes JSON.
/// </summary>
public static class BenchCommand
{
    public static readonly int[] DefaultSeqLens = [1, 128, 1024, 4096, 16384];

    public static Command Create(CliConsole console)
    {
        Option<string?> config = CliOptions.Config();
        config.DefaultValueFactory = _ => "qwen3-30b-a3b";
        var seqlen = CliOptions.SeqLens(DefaultSeqLens, "Token counts T to time, a comma-separated list.");
        var dtype = CliOptions.Dtype(ScalarType.BFloat16, "Storage dtype.");
        var backward = new Option<bool>("--backward") { Description = "Also time forward+backward." };
        var json = new Option<string?>("--json") { Description = "Write the report (card, rates, rows) as JSON to this file.", HelpName = "FILE" };
        var noReference = new Option<bool>("--no-reference") { Description = "Skip the grouped reference on cuBLAS." };
        var noGraph = new Option<bool>("--no-graph") { Description = "Replay the fused block with direct launches instead of a CUDA graph." };
        var noAutotune = new Option<bool>("--no-autotune") { Description = "Use the default kernel configs instead of autotuning." };
        var seed = CliOptions.Seed(1234, "Seed of the weights (inputs: seed + T).");
        var gemm = new Option<bool>("--gemm")
        {
            Description = "Time each expert GEMM alone (every tile of ours, sm_80 and sm_90a, beside cublasGemmGroupedBatchedEx and a dense cuBLAS GEMM of equal FLOPs), in TFLOP/s.",
        };

        var inference = new Option<bool>("--inference")
        {
            Description = "Time the forward of an inference-only block (FusedBlockOptions.InferenceOnly: G1 is not kept for a backward). Excludes --backward.",
        };

        var fuseDSwiGlu = new Option<bool>("--fuse-dswiglu")
        {
            Description = "GEMM2 dX runs the dSwiGLU epilogue on sm_90a tiles (FusedBlockOptions.FuseSwiGluBackward).",
        };

        var decode = new Option<DecodeMode>("--decode")
        {
            Description = "Which expert kernels the fused forward runs: auto (the decode kernels for small T), off (the grouped GEMMs), always (the decode kernels at every T).",
            DefaultValueFactory = _ => DecodeMode.Auto,
        };

        var ep = new Option<int?>("--ep")
        {
            Description = "Time one expert-parallel layer over N GPUs (NCCL, one rank per GPU): per-layer time and the exchange's share; " +
                          $"defaults: --config {ExpertParallelBench.DefaultConfig} --seqlen {string.Join(',', ExpertParallelBench.DefaultSeqLens)} (T per rank).",
            HelpName = "N",
        };

        var command = new Command("bench", "Time the fused block (and the cuBLAS grouped reference): ms, TFLOP/s, GB/s, % of the floor. GPU only.")
        {
            config, seqlen, dtype, backward, json, noReference, noGraph, noAutotune, seed, gemm, inference, fuseDSwiGlu, ep, decode,
        };
        command.SetAction(parse => CliApp.Guard(console, () => Run(console, new BenchOptions(
            parse.GetValue(ep) is not null && parse.GetResult(config) is not { Implicit: false } ? ExpertParallelBench.DefaultConfig : parse.GetValue(config)!,
            parse.GetValue(ep) is not null && parse.GetResult(seqlen) is not { Implicit: false } ? ExpertParallelBench.DefaultSeqLens : parse.GetValue(seqlen)!.Values,
            parse.GetValue(dtype).Type,
            parse.GetValue(backward),
            parse.GetValue(json),
            !parse.GetValue(noReference),
            !parse.GetValue(noGraph),
            !parse.GetValue(noAutotune),
            parse.GetValue(seed),
            parse.GetValue(gemm),
            parse.GetValue(inference),
            parse.GetValue(fuseDSwiGlu),
            parse.GetValue(ep),
            parse.GetValue(decode)))));
        return command;
    }

    public static int Run(CliConsole console, BenchOptions o)
    {
        MoeConfig config = MoeConfig.Resolve(o.Config);
        if (o.SeqLens.Any(t => t <= 0)) throw new CliUsageException("--seqlen: every T must be positive");
        if (o.Inference && o.Backward) throw new CliUsageException("--inference times an inference-only block: it excludes --backward");
        if (o.Json is not null && Directory.Exists(o.Json)) throw new CliUsageException($"--json {o.Json} is a folder; give a file name");
        if (o.ExpertParallelRanks is { } ranks) return ExpertParallelBench.Run(console, config, o, ranks);
        DeviceSelection.UseGpu(console, DeviceChoice.Gpu, "bench");
        if (o.Gemm) return RunGemm(console, config, o);

        var options = new BlockBenchmarkOptions
        {
            Config = config,
            DType = o.DType,
            Tokens = o.SeqLens,
            Backward = o.Backward,
            Fused = new FusedBlockOptions { Autotune = o.Autotune, InferenceOnly = o.Inference, FuseSwiGluBackward = o.FuseDSwiGlu, Decode = o.Decode },
            UseGraph = o.Graph,
            IncludeReference = o.Reference,
            Seed = o.Seed,
        };
        using CudaContext context = CudaContext.Create(0);
        console.Out.WriteLine($"bench: {config}; {o.DType.ShortName()}; T = {string.Join(",", o.SeqLens)}; {(o.Backward ? "fwd and fwd+bwd" : o.Inference ? "fwd (inference only)" : "fwd")}; device {context}");
        var benchmark = new BlockBenchmark(context, options);
        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"floor rates: {benchmark.Rates.TensorTflops:0} TFLOP/s, {benchmark.Rates.BandwidthTBps:0.00} TB/s ({benchmark.Rates.Source})"));

        BenchmarkReport report = RunWithProgress(console, benchmark);

        console.Ansi.Write(BuildTable(report));
        if (report.ColdStart is { } cold)
        {
            console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"cold start to the first forward (T={cold.Tokens}): {cold.WithoutStoredMs:0} ms autotuning {cold.TunedGemms} GEMMs, {cold.WithStoredMs:0} ms with their stored choices ({cold.StoredGemmsUsed} used)"));
        }
        if (o.Json is not null)
        {
            string? folder = Path.GetDirectoryName(Path.GetFullPath(o.Json));
            if (folder is not null) Directory.CreateDirectory(folder);
            File.WriteAllText(o.Json, report.ToJson());
            console.Out.WriteLine($"wrote {o.Json}");
        }
        return CliApp.ExitOk;
    }

    private static int RunGemm(CliConsole console, MoeConfig config, BenchOptions o)
    {
        if (o.DType == ScalarType.Float32) throw new CliUsageException("--gemm times the bf16/fp16 tensor-core kernels; use --dtype bf16 or fp16");
        using CudaContext context = CudaContext.Create(0);
        console.Out.WriteLine($"bench --gemm: {config}; {o.DType.ShortName()}; T = {string.Join(",", o.SeqLens)}; device {context}; " +
            $"grouped GEMM path {GroupedGemm.For(context).PathName(GroupedGemmLayout.ForwardNT, o.DType)}");
        GemmBenchReport report = new GroupedGemmBenchmark(context, config, o.DType, o.Seed)
            .Run(o.SeqLens, row => console.Out.WriteLine(GroupedGemmBenchmark.Line(row)));
        if (o.Json is not null)
        {
            string? folder = Path.GetDirectoryName(Path.GetFullPath(o.Json));
            if (folder is not null) Directory.CreateDirectory(folder);
            File.WriteAllText(o.Json, report.ToJson());
            console.Out.WriteLine($"wrote {o.Json}");
        }
        return CliApp.ExitOk;
    }

    private static BenchmarkReport RunWithProgress(CliConsole console, BlockBenchmark benchmark)
    {
        if (!console.IsInteractive)
        {
            // Logs: one line per finished row.
            return benchmark.Run(p =>
            {
                if (p.Row is { } r) console.Out.WriteLine(RowLine(r));
            });
        }
        return console.Ansi.Status().Start("starting ...", ctx => benchmark.Run(p =>
        {
            if (p.Row is { } r)
            {
                console.Ansi.MarkupLine(Markup.Escape(RowLine(r)));
            }
            else
            {
                ctx.Status(Markup.Escape(p.Tokens > 0 ? $"{p.Impl} T={p.Tokens}: {p.Stage}" : $"{p.Impl}: {p.Stage}"));
            }
        }));
    }

    private static string RowLine(BenchmarkRow r) => string.Create(CultureInfo.InvariantCulture,
        $"  {r.Impl} T={r.Tokens} {r.Pass}: {r.MedianMs:0.000} ms, {r.Tflops:0.0} TFLOP/s, {r.GBps:0} GB/s, {r.PercentOfFloor:0}% of floor ({r.Replays} replays, {r.Mode})");

    private static Table BuildTable(BenchmarkReport report)
    {
        var table = new Table().Border(TableBorder.Simple)
            .Title(Markup.Escape($"{report.Device}: {report.Config} (H={report.HiddenSize} I={report.IntermediateSize} E={report.NumExperts} k={report.TopK}) {report.DType}; fused: {report.FusedOptions}"))
            .AddColumn("impl")
            .AddColumn(new TableColumn("T").RightAligned())
            .AddColumn("pass")
            .AddColumn(new TableColumn("ms").RightAligned())
            .AddColumn(new TableColumn("TFLOP/s").RightAligned())
            .AddColumn(new TableColumn("GB/s").RightAligned())
            .AddColumn(new TableColumn("floor ms").RightAligned())
            .AddColumn(new TableColumn("% of floor").RightAligned())
            .AddColumn(new TableColumn("experts hit").RightAligned())
            .AddColumn(new TableColumn("replays").RightAligned())
            .AddColumn("mode");
        CultureInfo inv = CultureInfo.InvariantCulture;
        foreach (BenchmarkRow r in report.Rows.OrderBy(r => r.Pass, StringComparer.Ordinal).ThenBy(r => r.Tokens).ThenBy(r => r.Impl, StringComparer.Ordinal))
        {
            table.AddRow(
                Markup.Escape(r.Impl),
                r.Tokens.ToString(inv),
                Markup.Escape(r.Pass),
                r.MedianMs.ToString("0.000", inv),
                r.Tflops.ToString("0.0", inv),
                r.GBps.ToString("0", inv),
                r.FloorMs.ToString("0.000", inv),
                r.PercentOfFloor.ToString("0", inv),
                r.ExpertsHit.ToString(inv),
                r.Replays.ToString(inv),
                Markup.Escape(r.Mode));
        }
        return table;
    }
}
