using System.Text.Json;
using System.Text.Json.Serialization;

namespace MoeNative.Blocks.Benchmarking;

/// <summary>One timed (implementation, T, pass).</summary>
/// <param name="Impl">"fused" or "reference-cublas".</param>
/// <param name="Tokens">T.</param>
/// <param name="Pass">"fwd" or "fwd+bwd".</param>
/// <param name="MedianMs">Median time of one call, ms (CUDA events for the fused block, wall clock for the reference).</param>
/// <param name="Tflops">FLOPs / median time, 10^12/s.</param>
/// <param name="GBps">Bytes / median time, 10^9/s.</param>
/// <param name="FloorMs">max(FLOPs / tensor rate, bytes / bandwidth), ms.</param>
/// <param name="PercentOfFloor">100 · floor / median: 100 means at the floor.</param>
/// <param name="Replays">Timed calls.</param>
/// <param name="ExpertsHit">Distinct experts that received a token.</param>
/// <param name="Flops">FLOPs of one call.</param>
/// <param name="Bytes">Minimal bytes of one call.</param>
/// <param name="Mode">"graph", "direct" or "host" (how calls were issued).</param>
public sealed record BenchmarkRow(
    string Impl, int Tokens, string Pass, double MedianMs, double Tflops, double GBps, double FloorMs, double PercentOfFloor,
    int Replays, int ExpertsHit, double Flops, double Bytes, string Mode);

/// <summary>The whole run: card, rates, config and rows; serialisable to JSON. <paramref name="GemmPath"/>: "sm90a" or
/// "sm80" (the grouped-GEMM family a null configuration takes for the forward on this card, MOENATIVE_FORCE_SM80
/// included); <paramref name="AutotuneChoices"/>: "GEMM T=shape-class: config" per tuned GEMM (an sm_90a tile's name
/// starts with sm90a_).</summary>
public sealed record BenchmarkReport(
    string Device, DeviceRates Rates, string Config, int HiddenSize, int IntermediateSize, int NumExperts, int TopK,
    string DType, string FusedOptions, DateTimeOffset StartedUtc, IReadOnlyList<BenchmarkRow> Rows,
    string GemmPath = "", IReadOnlyList<string>? AutotuneChoices = null)
{
    /// <summary>Time from a cold start to the first forward, with and without stored kernel choices (null when not
    /// measured: autotune off or <see cref="BlockBenchmarkOptions.MeasureColdStart"/> false).</summary>
    public ColdStartTiming? ColdStart { get; init; }

    /// <summary>Indented JSON with snake_case names.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, BenchmarkJsonContext.Default.BenchmarkReport);
}

/// <summary>Progress of a run: what is being done now.</summary>
public sealed record BenchmarkProgress(string Impl, int Tokens, string Stage, BenchmarkRow? Row = null);

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(BenchmarkReport))]
[JsonSerializable(typeof(BenchmarkRow))]
[JsonSerializable(typeof(ColdStartTiming))]
internal sealed partial class BenchmarkJsonContext : JsonSerializerContext;
