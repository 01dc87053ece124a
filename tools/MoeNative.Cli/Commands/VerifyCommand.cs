using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using MoeNative.Blocks;
using MoeNative.Cli.Verification;
using MoeNative.Interop;
using MoeNative.Reference;
using Spectre.Console;

namespace MoeNative.Cli.Commands;

/// <summary>What <c>verify</c> checks.</summary>
/// <param name="Config">Preset name or config.json path; null = qwen3-30b-a3b on the GPU, medium on the CPU.</param>
/// <param name="SeqLen">T; null = 128 on the GPU, 32 on the CPU.</param>
/// <param name="DType">Storage dtype.</param>
/// <param name="Device">Where to run.</param>
/// <param name="Seed">Seed of the weights and inputs.</param>
/// <param name="Implementations">Subset of hf, grouped, fused to check against the HF loop; null = all the device allows.</param>
/// <param name="Backward">Also check the five gradients.</param>
public sealed record VerifyOptions(
    string? Config, int? SeqLen, ScalarType DType, DeviceChoice Device, int Seed,
    IReadOnlyList<string>? Implementations, bool Backward = true);

/// <summary>
/// <c>verify</c>: random weights and inputs; the HF loop is the oracle; every other implementation the device allows
/// runs forward (under the oracle's routing, so a near-tie in top-k cannot flip a selection) and backward; a table
/// of max-abs and relative-norm errors per intermediate and gradient with pass/fail; exit code 1 on any failure.
/// On the CPU: grouped vs hf (host GEMMs). On the GPU: grouped vs hf (both on cuBLAS), fused vs grouped (every
/// intermediate), fused vs hf (output, router logits, the five gradients).
/// </summary>
public static class VerifyCommand
{
    public const string DefaultGpuConfig = "qwen3-30b-a3b";
    /// <summary>Qwen3-like shape at a quarter of the hidden size: seconds on 2 cores (the full size takes minutes there).</summary>
    public const string DefaultCpuConfig = "medium";
    public const int DefaultGpuSeqLen = 128;
    public const int DefaultCpuSeqLen = 32;
    private static readonly string[] AllImplementations = ["hf", "grouped", "fused"];

    public static Command Create(CliConsole console)
    {
        var config = CliOptions.Config($"Default {DefaultGpuConfig} on the GPU, {DefaultCpuConfig} on the CPU.");
        var seqlen = CliOptions.SeqLen($"Tokens T (batch x sequence), positive. Default {DefaultGpuSeqLen} on the GPU, {DefaultCpuSeqLen} on the CPU.");
        var dtype = CliOptions.Dtype(ScalarType.BFloat16, "Storage dtype.");
        var device = CliOptions.Device();
        var seed = CliOptions.Seed(0, "Seed of the random weights and inputs.");
        var impl = new Option<string[]>("--impl")
        {
            Description = "Implementations to check against the HF loop, a list of hf, grouped, fused (comma-separated or repeated). Default: all the device allows.",
            HelpName = "hf,grouped,fused",
            AllowMultipleArgumentsPerToken = false,
            CustomParser = r =>
            {
                var names = r.Tokens.SelectMany(t => t.Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                    .Select(s => s.ToLowerInvariant()).Distinct().ToArray();
                string? bad = names.FirstOrDefault(n => !AllImplementations.Contains(n));
                if (bad is not null) r.AddError($"--impl: unknown implementation '{bad}'; expected hf, grouped or fused.");
                return names;
            },
        };
        var forwardOnly = new Option<bool>("--forward-only") { Description = "Skip the backward (gradients)." };

        var command = new Command("verify", "Check every implementation against the HF reference on random weights: table of errors, exit 1 on failure.")
        {
            config, seqlen, dtype, device, seed, impl, forwardOnly,
        };
        command.SetAction(parse => CliApp.Guard(console, () => Run(console, new VerifyOptions(
            parse.GetValue(config),
            parse.GetValue(seqlen),
            parse.GetValue(dtype).Type,
            parse.GetValue(device) ?? DeviceChoice.Auto,
            parse.GetValue(seed),
            parse.GetValue(impl) is { Length: > 0 } chosen ? chosen : null,
            !parse.GetValue(forwardOnly)))));
        return command;
    }

    public static int Run(CliConsole console, VerifyOptions options)
    {
        if (options.SeqLen is <= 0) throw new CliUsageException($"--seqlen must be positive (T tokens), got {options.SeqLen}");
        MoeConfig? given = options.Config is null ? null : MoeConfig.Resolve(options.Config); // bad --config fails first
        bool fusedAsked = options.Implementations?.Contains("fused") == true;
        bool useGpu = DeviceSelection.UseGpu(console, options.Device, fusedAsked ? "--impl fused" : null);
        MoeConfig config = given ?? MoeConfig.Preset(useGpu ? DefaultGpuConfig : DefaultCpuConfig);
        var impls = new HashSet<string>(options.Implementations ?? (useGpu ? AllImplementations : ["hf", "grouped"]));
        if (impls.Contains("fused")) impls.Add("grouped"); // fused intermediates are judged against the grouped form
        int tokens = options.SeqLen ?? (useGpu ? DefaultGpuSeqLen : DefaultCpuSeqLen);
        MoeMemoryEstimate.RequireHostMemory(config, tokens, options.Backward, $"--seqlen {tokens}", runs: impls.Union(["hf"]).Count());
        ScalarType dt = options.DType;
        double tol = TensorTolerance.For(dt);
        double hfOutputTol = TensorTolerance.ForHfAccumulatedOutput(dt, config.TopK);

        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"verify: {config}; T={tokens}, {dt.ShortName()}, {(useGpu ? "gpu" : "cpu")}, seed {options.Seed}; tolerance atol = rtol = {CliOptions.Tolerance(tol)}"));

        var steps = new StepRunner(console);
        MoeWeights weights = steps.Run("random weights", () => MoeWeights.Random(config, options.Seed, dt));
        long th = (long)tokens * config.HiddenSize;
        float[] x = TensorRandom.Normal(th, unchecked(options.Seed + 101), 1f, dt);   // [T,H]
        float[] dY = TensorRandom.Normal(th, unchecked(options.Seed + 202), 1f, dt);  // [T,H]

        var checks = new List<TensorCheck>();
        CudaContext? context = null;
        CublasGemm? cublas = null;
        try
        {
            IGemmBackend gemm = HostGemm.Instance;
            if (useGpu)
            {
                context = CudaContext.Create(0);
                cublas = new CublasGemm(context);
                gemm = cublas;
                console.Out.WriteLine($"device: {context}");
            }
            string backend = useGpu ? "cuBLAS" : "host";

            // ---- oracle: the HF loop (every implementation below through the same host block interface) -----
            IMoeHostBlock hf = new HfMoeReference(weights, dt, gemm);
            string hfName = $"{hf.Name} ({backend})";
            MoeIntermediates hfFwd = steps.Run($"{hfName} forward", () => hf.Forward(x));
            MoeGradients? hfGrad = options.Backward ? steps.Run($"{hfName} backward", () => hf.Backward(dY)) : null;
            var shapes = new Shapes(config, tokens);
            float[] routerScale = options.Backward ? RouterGradientScale.Compute(hfFwd, dY) : [];

            // ---- grouped reference vs hf ---------------------------------------------------------------------
            MoeIntermediates? groupedFwd = null;
            string groupedName = $"grouped ({backend})";
            if (impls.Contains("grouped"))
            {
                IMoeHostBlock grouped = new GroupedMoeReference(weights, dt, gemm);
                groupedFwd = steps.Run($"{groupedName} forward", () => grouped.Forward(x, hfFwd.Routing));
                MoeGradients? groupedGrad = options.Backward ? steps.Run($"{groupedName} backward", () => grouped.Backward(dY)) : null;
                string pair = $"{groupedName} vs {hfName}";
                AddOutputChecks(checks, pair, shapes, groupedFwd, hfFwd, tol, hfOutputTol);
                if (groupedGrad is not null) AddGradientChecks(checks, pair, shapes, groupedGrad, hfGrad!, tol, routerScale);
            }

            // ---- fused PTX block vs grouped (intermediates) and vs hf (outputs, gradients) --------------------
            if (impls.Contains("fused"))
            {
                const string fusedName = "fused (PTX)";
                try
                {
                    using Qwen3MoeFusedBlock fusedBlock = steps.Run($"{fusedName}: upload + JIT", () => new Qwen3MoeFusedBlock(context!, weights, dt));
                    IMoeHostBlock fused = fusedBlock;
                    MoeIntermediates fusedFwd = steps.Run($"{fusedName} forward", () => fused.Forward(x, hfFwd.Routing));
                    MoeGradients? fusedGrad = options.Backward ? steps.Run($"{fusedName} backward", () => fused.Backward(dY)) : null;
                    AddIntermediateChecks(checks, $"{fusedName} vs {groupedName}", shapes, fusedFwd, groupedFwd!, tol);
                    string pair = $"{fusedName} vs {hfName}";
                    AddOutputChecks(checks, pair, shapes, fusedFwd, hfFwd, tol, hfOutputTol);
                    if (fusedGrad is not null) AddGradientChecks(checks, pair, shapes, fusedGrad, hfGrad!, tol, routerScale);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    checks.Add(TensorCheck.Failed($"{fusedName} vs {hfName}", "(run)", "", tol,
                        $"{e.GetType().Name}: {CliConsole.OneLine(e.Message)}"));
                }
            }
        }
        finally
        {
            cublas?.Dispose();
            context?.Dispose();
        }

        return Report(console, checks, tol);
    }

    /// <summary>Prints the table and the verdict (legend with the dtype's tolerance <paramref name="tol"/>);
    /// exit code 0 when every check passed, else 1.</summary>
    internal static int Report(CliConsole console, IReadOnlyList<TensorCheck> checks, double tol)
    {
        if (checks.Count == 0)
        {
            console.Out.WriteLine("nothing to compare: only the HF loop ran (add --impl grouped or fused)");
            return CliApp.ExitOk;
        }
        console.Ansi.Write(BuildTable(checks));
        int failed = checks.Count(c => !c.Passed);
        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"pass = no NaN, every element within |a-e| <= tol*max(1,max|e|) + tol*|e|, and ||a-e|| / max(||e||, sqrt(n)) <= tol; tol = {CliOptions.Tolerance(tol)} (widened for the HF loop's output, which sums k experts in the storage dtype)"));
        console.Out.WriteLine(failed == 0
            ? $"PASS: all {checks.Count} checks within tolerance"
            : $"FAIL: {failed} of {checks.Count} checks out of tolerance: {string.Join(", ", checks.Where(c => !c.Passed).Select(c => $"{c.Comparison} {c.Tensor}"))}");
        return failed == 0 ? CliApp.ExitOk : CliApp.ExitCheckFailed;
    }

    // ---- checks ---------------------------------------------------------------------------------------------------

    /// <summary>Symbolic and numeric shapes of every compared tensor.</summary>
    private sealed record Shapes(MoeConfig C, int T)
    {
        private int Tk => T * C.TopK;

        public string Of(string tensor) => tensor switch
        {
            "router_logits" => $"[T,E]=[{T},{C.NumExperts}]",
            "output" or "grad_hidden_states" => $"[T,H]=[{T},{C.HiddenSize}]",
            "grad_gate" => $"[E,H]=[{C.NumExperts},{C.HiddenSize}]",
            "grad_gate_proj" or "grad_up_proj" => $"[E,I,H]=[{C.NumExperts},{C.IntermediateSize},{C.HiddenSize}]",
            "grad_down_proj" => $"[E,H,I]=[{C.NumExperts},{C.HiddenSize},{C.IntermediateSize}]",
            "token_counts" => $"[E]=[{C.NumExperts}]",
            "gather" => $"[T*k]=[{Tk}]",
            "routing_weights" => $"[T,k]=[{T},{C.TopK}]",
            "first_gemm" => $"[T*k,2I]=[{Tk},{2 * C.IntermediateSize}]",
            "intermediate" => $"[T*k,I]=[{Tk},{C.IntermediateSize}]",
            "second_gemm" or "unpermuted" => $"[T*k,H]=[{Tk},{C.HiddenSize}]",
            _ => "",
        };
    }

    /// <summary>Router logits and output against the HF loop; <paramref name="hfOutputTol"/> is
    /// <see cref="TensorTolerance.ForHfAccumulatedOutput"/>.</summary>
    private static void AddOutputChecks(List<TensorCheck> checks, string pair, Shapes s, MoeIntermediates actual, MoeIntermediates expected,
        double tol, double hfOutputTol)
    {
        checks.Add(TensorCheck.Compare(pair, "router_logits", s.Of("router_logits"), actual.RouterLogits, expected.RouterLogits, tol));
        checks.Add(TensorCheck.Compare(pair, "output", s.Of("output"), actual.Output, expected.Output, hfOutputTol));
    }

    /// <summary>The five gradients; the router's against the scale of the dot products it is a difference of
    /// (<paramref name="routerScale"/>: <see cref="RouterGradientScale"/> of the expected side).</summary>
    private static void AddGradientChecks(List<TensorCheck> checks, string pair, Shapes s, MoeGradients actual, MoeGradients expected, double tol,
        float[] routerScale)
    {
        checks.Add(TensorCheck.Compare(pair, "grad_hidden_states", s.Of("grad_hidden_states"), actual.HiddenStates, expected.HiddenStates, tol));
        checks.Add(TensorCheck.Compare(pair, "grad_gate", s.Of("grad_gate"), actual.Gate, expected.Gate, tol, routerScale));
        checks.Add(TensorCheck.Compare(pair, "grad_gate_proj", s.Of("grad_gate_proj"), actual.GateProj, expected.GateProj, tol));
        checks.Add(TensorCheck.Compare(pair, "grad_up_proj", s.Of("grad_up_proj"), actual.UpProj, expected.UpProj, tol));
        checks.Add(TensorCheck.Compare(pair, "grad_down_proj", s.Of("grad_down_proj"), actual.DownProj, expected.DownProj, tol));
    }

    /// <summary>Every forward intermediate (docs/DESIGN.md steps 1–10); an array the implementation did not produce
    /// (empty, e.g. G2 when its store is fused into the unpermute) is left out.</summary>
    private static void AddIntermediateChecks(List<TensorCheck> checks, string pair, Shapes s, MoeIntermediates actual, MoeIntermediates expected, double tol)
    {
        checks.Add(TensorCheck.CompareExact(pair, "token_counts", s.Of("token_counts"), actual.TokenCounts, expected.TokenCounts));
        checks.Add(TensorCheck.CompareExact(pair, "gather", s.Of("gather"), actual.Gather, expected.Gather));
        checks.Add(TensorCheck.Compare(pair, "routing_weights", s.Of("routing_weights"), actual.RoutingWeights, expected.RoutingWeights, tol));
        void Optional(string name, float[] a, float[] e)
        {
            if (a.Length > 0 || e.Length == 0) checks.Add(TensorCheck.Compare(pair, name, s.Of(name), a, e, tol));
        }
        Optional("first_gemm", actual.FirstGemm, expected.FirstGemm);
        Optional("intermediate", actual.Intermediate, expected.Intermediate);
        Optional("second_gemm", actual.SecondGemm, expected.SecondGemm);
        Optional("unpermuted", actual.Unpermuted, expected.Unpermuted);
        checks.Add(TensorCheck.Compare(pair, "output", s.Of("output"), actual.Output, expected.Output, tol));
    }

    // ---- rendering --------------------------------------------------------------------------------------------------

    private static Table BuildTable(IReadOnlyList<TensorCheck> checks)
    {
        var table = new Table().Border(TableBorder.Simple)
            .AddColumn("comparison")
            .AddColumn("tensor")
            .AddColumn("shape")
            .AddColumn(new TableColumn("max abs").RightAligned())
            .AddColumn(new TableColumn("rel norm").RightAligned())
            .AddColumn(new TableColumn("outside tol").RightAligned())
            .AddColumn(new TableColumn("tol").RightAligned())
            .AddColumn("result");
        string? last = null;
        foreach (TensorCheck c in checks)
        {
            string result = c.Passed ? "[green]pass[/]" : "[red bold]FAIL[/]";
            if (c.Note is not null) result += " " + Markup.Escape(c.Note);
            else if (c.Result!.NaNCount > 0) result += Markup.Escape($" ({c.Result.NaNCount} NaN)");
            else if (!c.Result.RelativeNormWithinBound) result += " (rel norm)";
            table.AddRow(
                c.Comparison == last ? "" : Markup.Escape(c.Comparison),
                Markup.Escape(c.Tensor),
                Markup.Escape(c.Shape),
                Number(c.Result?.MaxAbsError ?? double.NaN),
                Number(c.Result?.RelativeNormError ?? double.NaN),
                c.Result is null ? "" : $"{c.Result.Mismatches}/{c.Result.Count}",
                c.Tolerance == 0 ? "exact" : CliOptions.Tolerance(c.Tolerance),
                result);
            last = c.Comparison;
        }
        return table;
    }

    private static string Number(double value) => double.IsNaN(value) ? "NaN"
        : double.IsPositiveInfinity(value) ? "inf"
        : value == 0 ? "0"
        : value.ToString("0.00e+00", CultureInfo.InvariantCulture);

    /// <summary>Runs named steps under a status display (terminal) or prints "label: 1.23 s" lines (logs, tests).</summary>
    private sealed class StepRunner(CliConsole console)
    {
        public T Run<T>(string label, Func<T> work)
        {
            var clock = Stopwatch.StartNew();
            T result = console.IsInteractive ? console.Ansi.Status().Start(Markup.Escape(label) + " ...", _ => work()) : work();
            console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {label}: {clock.Elapsed.TotalSeconds:0.00} s"));
            return result;
        }
    }
}
