using System.CommandLine;
using System.Globalization;
using MoeNative.Blocks;
using MoeNative.Blocks.Benchmarking;
using MoeNative.Interop;
using MoeNative.Reference;
using Spectre.Console;

namespace MoeNative.Cli.Commands;

/// <summary>What <c>tune</c> fills.</summary>
public sealed record TuneOptions(string Config, int[] SeqLens, ScalarType DType, bool Backward, string? Store, int Seed);

/// <summary>
/// <c>tune</c>: fills the on-disk kernel choices ahead of time (<see cref="TuningStore"/>), so an inference server's
/// first call of each shape class does not time every candidate: one fused block with autotune per config and dtype,
/// a forward (and with <c>--backward</c> a backward) per T under a progress bar, then a table of the choices.
/// GPU only.
/// </summary>
public static class TuneCommand
{
    public static Command Create(CliConsole console)
    {
        Option<string?> config = CliOptions.Config();
        config.DefaultValueFactory = _ => "qwen3-30b-a3b";
        var seqlen = CliOptions.SeqLens(BenchCommand.DefaultSeqLens, "Token counts T to tune (one shape class each), a comma-separated list.");
        var dtype = CliOptions.Dtype(ScalarType.BFloat16, "Storage dtype.");
        var backward = new Option<bool>("--backward") { Description = "Also tune the backward GEMMs (training)." };
        var store = new Option<string?>("--store")
        {
            Description = $"Folder of the stored choices. Default: ${TuningStore.DirectoryVariable}, else moenative/tuning in the user's cache folder.",
            HelpName = "DIR",
        };
        var seed = CliOptions.Seed(1234, "Seed of the random weights and inputs.");
        var command = new Command("tune", "Time the kernel candidates ahead of time and store the choices on disk (used by every later process). GPU only.")
        {
            config, seqlen, dtype, backward, store, seed,
        };
        command.SetAction(parse => CliApp.Guard(console, () => Run(console, new TuneOptions(
            parse.GetValue(config)!,
            parse.GetValue(seqlen)!.Values,
            parse.GetValue(dtype).Type,
            parse.GetValue(backward),
            parse.GetValue(store),
            parse.GetValue(seed)))));
        return command;
    }

    public static int Run(CliConsole console, TuneOptions o)
    {
        MoeConfig config = MoeConfig.Resolve(o.Config);
        if (o.SeqLens.Any(t => t <= 0)) throw new CliUsageException("--seqlen: every T must be positive");
        foreach (int t in o.SeqLens) MoeLimits.CheckDeviceTokens(config, t, "--seqlen");
        if (o.Store is not null && File.Exists(o.Store)) throw new CliUsageException($"--store {o.Store} is a file; give a folder");
        DeviceSelection.UseGpu(console, DeviceChoice.Gpu, "tune");

        var store = new TuningStore(o.Store ?? TuningStore.DefaultDirectory, m => console.WriteNote("warning: " + m));
        using CudaContext context = CudaContext.Create(0);
        console.Out.WriteLine($"tune: {config}; {o.DType.ShortName()}; T = {string.Join(",", o.SeqLens)}; {(o.Backward ? "fwd and bwd" : "fwd")}; device {context}");
        console.Out.WriteLine($"store: {store.PathOf(TuningContext.For(context, config, o.DType))}");

        IReadOnlyList<TuneRow> rows = RunWithProgress(console, o.SeqLens.Length,
            onDone => BlockTuning.Run(context, config, o.DType, o.SeqLens, o.Backward, store, o.Seed, onDone));
        console.Ansi.Write(BuildTable(rows));
        int stored = rows.Count(r => r.FromStore);
        console.Out.WriteLine($"{rows.Count} choices: {rows.Count - stored} tuned now, {stored} already stored");
        return CliApp.ExitOk;
    }

    /// <summary>A Spectre progress bar over the token counts (terminal) or one line per T (logs, tests).</summary>
    private static IReadOnlyList<TuneRow> RunWithProgress(CliConsole console, int count, Func<Action<int>, IReadOnlyList<TuneRow>> withProgress)
    {
        if (!console.IsInteractive)
        {
            return withProgress(done => console.Out.WriteLine($"  tuned {done}/{count} token counts"));
        }
        IReadOnlyList<TuneRow> rows = [];
        console.Ansi.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                ProgressTask task = ctx.AddTask("tuning", maxValue: count);
                rows = withProgress(done => task.Value = done);
            });
        return rows;
    }

    private static Table BuildTable(IReadOnlyList<TuneRow> rows)
    {
        var table = new Table().Border(TableBorder.Simple)
            .AddColumn(new TableColumn("T").RightAligned())
            .AddColumn("gemm")
            .AddColumn(new TableColumn("shape class").RightAligned())
            .AddColumn("config")
            .AddColumn(new TableColumn("ms").RightAligned())
            .AddColumn(new TableColumn("timed").RightAligned())
            .AddColumn("source");
        CultureInfo inv = CultureInfo.InvariantCulture;
        foreach (TuneRow r in rows)
        {
            table.AddRow(
                r.Tokens.ToString(inv),
                r.Gemm.ToString(),
                "T<=" + r.ShapeClassTokens.ToString(inv),
                r.Config.Name,
                double.IsNaN(r.Milliseconds) ? "-" : r.Milliseconds.ToString("0.000", inv),
                r.CandidatesTimed.ToString(inv),
                r.FromStore ? "stored" : "tuned");
        }
        return table;
    }
}
