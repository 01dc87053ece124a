using System.Globalization;
using System.Text.Json;
using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Reference;
using Spectre.Console;

namespace MoeNative.Cli.Commands;

/// <summary>
/// <c>bench --ep N</c>: one expert-parallel layer over N GPUs of this machine (one process, a rank per GPU, NCCL with
/// NCCL_NVLS_ENABLE=0): the layer time (slowest rank, median of CUDA-event timings) and the share spent in the
/// exchanges, per T per rank. Fewer GPUs than N, or no libnccl, is a one-line error before anything is allocated.
/// </summary>
internal static class ExpertParallelBench
{
    public const string DefaultConfig = "qwen3-235b-a22b";
    public static readonly int[] DefaultSeqLens = [1024, 2048, 4096, 8192, 16384];

    public static int Run(CliConsole console, MoeConfig config, BenchOptions o, int ranks)
    {
        if (ranks < 1) throw new CliUsageException($"--ep {ranks}: the number of ranks must be at least 1");
        if (ranks > config.NumExperts) throw new CliUsageException($"--ep {ranks}: {config.Name ?? "the config"} has only {config.NumExperts} experts to split");
        if (o.Gemm) throw new CliUsageException("--ep and --gemm exclude each other");
        if (ExpertParallelDevices.Shortage(ranks, ExpertParallelDevices.Count()) is { } shortage)
            throw new CliRuntimeException($"bench --ep {ranks}: {shortage}");
        try
        {
            console.Out.WriteLine($"bench --ep {ranks}: {config}; {o.DType.ShortName()}; T per rank = {string.Join(",", o.SeqLens)}; " +
                $"{(o.Backward ? "fwd and fwd+bwd" : "fwd")}; NCCL {NcclCommunicator.VersionText} (NCCL_NVLS_ENABLE={Environment.GetEnvironmentVariable("NCCL_NVLS_ENABLE")})");
        }
        catch (DllNotFoundException e)
        {
            throw new CliRuntimeException($"bench --ep {ranks} needs NCCL: {e.Message.Split('\n')[0]} (set MOENATIVE_NCCL to libnccl.so.2)");
        }
        CudaContext[] contexts = Enumerable.Range(0, ranks).Select(CudaContext.Create).ToArray();
        try
        {
            foreach (CudaContext c in contexts) console.Out.WriteLine($"  rank {c.Ordinal}: {c}");
            IReadOnlyList<ExpertParallelBenchRow> rows = ExpertParallelBenchmark.Run(contexts, config, o.DType, o.SeqLens, o.Backward, o.Seed,
                progress: text => console.Out.WriteLine($"  {text}"), onRow: r => console.Out.WriteLine(Line(r)));
            console.Ansi.Write(Table(contexts[0].Name, config, o.DType, rows));
            if (o.Json is not null) WriteJson(o.Json, contexts, config, o.DType, rows, console);
        }
        finally
        {
            foreach (CudaContext c in contexts) c.Dispose();
        }
        return CliApp.ExitOk;
    }

    public static string Line(ExpertParallelBenchRow r) => string.Create(CultureInfo.InvariantCulture,
        $"  ep={r.Ranks} T={r.TokensPerRank}/rank {r.Pass}: {r.MedianMs:0.000} ms per layer, exchange {r.ExchangeMs:0.000} ms ({100 * r.ExchangeShare:0}%), " +
        $"max rows on a rank {r.RowsReceivedMax} ({r.Replays} replays)");

    private static Table Table(string card, MoeConfig c, ScalarType dt, IReadOnlyList<ExpertParallelBenchRow> rows)
    {
        var table = new Table().Border(TableBorder.Simple)
            .Title(Markup.Escape($"{card}: expert-parallel {c} {dt.ShortName()}"))
            .AddColumn(new TableColumn("ranks").RightAligned())
            .AddColumn(new TableColumn("T/rank").RightAligned())
            .AddColumn("pass")
            .AddColumn(new TableColumn("layer ms").RightAligned())
            .AddColumn(new TableColumn("exchange ms").RightAligned())
            .AddColumn(new TableColumn("exchange %").RightAligned())
            .AddColumn(new TableColumn("max rows/rank").RightAligned());
        CultureInfo inv = CultureInfo.InvariantCulture;
        foreach (ExpertParallelBenchRow r in rows)
            table.AddRow(r.Ranks.ToString(inv), r.TokensPerRank.ToString(inv), r.Pass, r.MedianMs.ToString("0.000", inv),
                r.ExchangeMs.ToString("0.000", inv), (100 * r.ExchangeShare).ToString("0", inv), r.RowsReceivedMax.ToString(inv));
        return table;
    }

    private static void WriteJson(string path, CudaContext[] contexts, MoeConfig c, ScalarType dt, IReadOnlyList<ExpertParallelBenchRow> rows, CliConsole console)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null) Directory.CreateDirectory(folder);
        using (var stream = File.Create(path))
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("kind", "expert-parallel");
            json.WriteStartArray("devices");
            foreach (CudaContext ctx in contexts) json.WriteStringValue(ctx.Name);
            json.WriteEndArray();
            json.WriteString("nccl", NcclCommunicator.VersionText);
            json.WriteString("config", c.ToString());
            json.WriteString("dtype", dt.ShortName());
            json.WriteStartArray("rows");
            foreach (ExpertParallelBenchRow r in rows)
            {
                json.WriteStartObject();
                json.WriteNumber("ranks", r.Ranks);
                json.WriteNumber("tokens_per_rank", r.TokensPerRank);
                json.WriteString("pass", r.Pass);
                json.WriteNumber("median_ms", r.MedianMs);
                json.WriteNumber("exchange_ms", r.ExchangeMs);
                json.WriteNumber("exchange_share", r.ExchangeShare);
                json.WriteNumber("max_rows_per_rank", r.RowsReceivedMax);
                json.WriteNumber("replays", r.Replays);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        console.Out.WriteLine($"wrote {path}");
    }
}
