using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using MoeNative.Cli;
using MoeNative.Interop;
using MoeNative.Reference;
using MoeNative.Reference.IO;

namespace MoeNative.Tests.Cli;

/// <summary>
/// Hostile and careless inputs to <c>run</c> and <c>verify</c>, one data row per input class (issue 12). Every row
/// checks, besides its own expectation: the exit code; stderr is exactly one line <c>error: ...</c> naming what the
/// row names, with no stack trace, no raw control character and at most a few KiB; the output folder was not created
/// (nothing written before validation); no temp file was left anywhere; every input file is byte-for-byte unchanged.
/// </summary>
[TestClass]
public sealed partial class HostileInputTests
{
    public TestContext TestContext { get; set; } = null!;

    /// <summary>One input class: how to set it up (returns the command line) and what must come out.</summary>
    private sealed record Case(string Name, int Exit, string[] Mentions, Func<Setup, string[]> Arrange, bool Writes = false);

    private static readonly Case[] Cases =
    [
        // ---- an output never overwrites an input (compared as files, not as strings) ------------------------------
        new("output is the weights file", 2, ["--output", "same file as --weights"], s => s.Run(output: s.Weights)),
        new("output is the input by another spelling", 2, ["--output", "same file as --input"],
            s => s.Run(output: Path.Combine(s.Dir, "sub", "..", "input.safetensors"), prepare: () => Directory.CreateDirectory(s.P("sub")))),
        new("output is a symbolic link to the grad", 2, ["--output", "same file as --grad-output"],
            s => { File.CreateSymbolicLink(s.P("link.safetensors"), s.Grad); return s.Run(output: s.P("link.safetensors")); }),
        new("output is a hard link of the config", 2, ["--output", "same file as --config"],
            s => { HardLink(s.Config, s.P("config-link.json")); return s.Run(output: s.P("config-link.json")); }),
        new("output is a shard of a sharded checkpoint", 2, ["--output", "same file as --weights"],
            s => { string dir = s.Sharded(); return s.Run(weights: dir, output: Path.Combine(dir, "model-00002-of-00002.safetensors")); }),
        new("output is a FIFO", 2, ["--output", "not a regular file"],
            s => { MakeFifo(s.P("fifo-out")); return s.Run(output: s.P("fifo-out")); }),

        // ---- shapes ------------------------------------------------------------------------------------------------
        new("shape product overflows 64 bits", 2, ["hidden_states", "overflows"],
            s => { s.RawSafetensors(s.Input, """{"hidden_states":{"dtype":"F32","shape":[4294967296,4294967296,32],"data_offsets":[0,0]}}"""u8, []); return s.Run(); }),

        // ---- non-finite policy -------------------------------------------------------------------------------------
        new("NaN in the input", 2, ["hidden_states", "non-finite", "--allow-nonfinite"], s => { s.Poison(s.Input, "hidden_states", float.NaN); return s.Run(); }),
        new("Inf in a weight", 2, ["gate.weight", "non-finite"], s => { s.PoisonRouter(float.PositiveInfinity); return s.Run(); }),
        new("input overflows fp16", 2, ["hidden_states", "non-finite", "fp16"], s => { s.Poison(s.Input, "hidden_states", 1e6f); return s.Run("--dtype", "fp16"); }),
        new("non-finite output is a failure, not written", 1, ["non-finite values in output", "nothing was written"],
            s => { s.ScaleInput(30000f); return s.Run("--dtype", "fp16"); }),
        new("allowed non-finite input: written, still exit 1", 1, ["non-finite", "anyway"],
            s => { s.Poison(s.Input, "hidden_states", float.NaN); return s.Run("--allow-nonfinite"); }, Writes: true),

        // ---- configs we do not implement -----------------------------------------------------------------------------
        new("qwen2_moe with a shared expert", 2, ["qwen2_moe", "shared expert", "shared_expert_intermediate_size"],
            s => s.RunWithConfig("""{"model_type":"qwen2_moe","shared_expert_intermediate_size":64,"hidden_size":32,"moe_intermediate_size":16,"num_experts":8,"num_experts_per_tok":2}""")),
        new("another model_type", 2, ["model_type 'mixtral'", "qwen3_moe"],
            s => s.RunWithConfig("""{"model_type":"mixtral","hidden_size":32,"moe_intermediate_size":16,"num_experts":8,"num_experts_per_tok":2}""")),
        new("a shared expert in a qwen3_moe config", 2, ["n_shared_experts"],
            s => s.RunWithConfig("""{"model_type":"qwen3_moe","n_shared_experts":1,"hidden_size":32,"moe_intermediate_size":16,"num_experts":8,"num_experts_per_tok":2}""")),
        new("a routing field that changes the math", 2, ["scoring_func", "softmax"],
            s => s.RunWithConfig("""{"model_type":"qwen3_moe","scoring_func":"sigmoid","hidden_size":32,"moe_intermediate_size":16,"num_experts":8,"num_experts_per_tok":2}""")),
        new("a layer with a dense MLP", 2, ["layer 0", "mlp_only_layers"],
            s => s.RunWithConfig("""{"model_type":"qwen3_moe","mlp_only_layers":[0],"hidden_size":32,"moe_intermediate_size":16,"num_experts":8,"num_experts_per_tok":2}""", "--layer", "0")),
        new("a quantized checkpoint", 2, ["quantization_config"],
            s => s.RunWithConfig("""{"model_type":"qwen3_moe","quantization_config":{"quant_method":"fp8"},"hidden_size":32,"moe_intermediate_size":16,"num_experts":8,"num_experts_per_tok":2}""")),

        // ---- malformed files ---------------------------------------------------------------------------------------
        new("invalid UTF-8 in a header", 2, ["input.safetensors", "UTF-8"],
            s =>
            {
                byte[] header = Encoding.UTF8.GetBytes("""{"hidden_?":{"dtype":"F32","shape":[0,32],"data_offsets":[0,0]}}""");
                header[Array.IndexOf(header, (byte)'?')] = 0xFF; // a byte that never occurs in UTF-8
                s.RawSafetensors(s.Input, header, []);
                return s.Run();
            }),
        new("index.json that is not an object", 2, ["model.safetensors.index.json", "JSON object"],
            s => { string dir = s.Sharded(); File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), "[1,2,3]"); return s.Run(weights: dir); }),
        new("duplicate tensor name", 2, ["duplicate", "hidden_states"],
            s =>
            {
                s.RawSafetensors(s.Input, """{"hidden_states":{"dtype":"F32","shape":[1,32],"data_offsets":[0,128]},"hidden_states":{"dtype":"F32","shape":[1,32],"data_offsets":[128,256]}}"""u8, new byte[256]);
                return s.Run();
            }),

        // ---- non-regular and oversized files -----------------------------------------------------------------------
        new("config is a FIFO", 2, ["config", "FIFO"], s => { MakeFifo(s.P("fifo.json")); return s.Run(config: s.P("fifo.json")); }),
        new("config is /dev/zero", 2, ["/dev/zero", "not a regular file"], s => s.Run(config: "/dev/zero")),
        new("weights file is a FIFO", 2, ["FIFO"], s => { MakeFifo(s.P("fifo.safetensors")); return s.Run(weights: s.P("fifo.safetensors")); }),
        new("index.json is a FIFO", 2, ["index", "FIFO"],
            s => { string dir = s.Sharded(); string index = Path.Combine(dir, "model.safetensors.index.json"); File.Delete(index); MakeFifo(index); return s.Run(weights: dir); }),
        new("oversized config", 2, ["config", "bytes"],
            s => { File.WriteAllText(s.Config, "{" + new string(' ', 2 << 20) + "}"); return s.Run(); }),
        new("oversized index.json", 2, ["index", "bytes"],
            s => { string dir = s.Sharded(); using (var f = File.OpenWrite(Path.Combine(dir, "model.safetensors.index.json"))) f.SetLength(65L << 20); return s.Run(weights: dir); }),

        // ---- memory checked before allocating ----------------------------------------------------------------------
        new("huge T in verify", 2, ["--seqlen", "GiB"], _ => ["verify", "--config", "tiny", "--seqlen", "2000000000", "--device", "cpu"]),
        new("sparse input claiming 10^8 tokens", 2, ["hidden_states", "GiB"],
            s =>
            {
                byte[] header = Encoding.UTF8.GetBytes("""{"hidden_states":{"dtype":"F32","shape":[100000000,32],"data_offsets":[0,12800000000]}}""");
                s.RawSafetensors(s.Input, header, []);
                using (var f = new FileStream(s.Input, FileMode.Open)) f.SetLength(f.Length + 12_800_000_000L); // sparse: no blocks written
                return s.Run();
            }),

        // ---- output paths ------------------------------------------------------------------------------------------
        new("output parent is a file", 2, ["--output", "is a file, not a folder"], s => s.Run(output: Path.Combine(s.Input, "y.safetensors"))),
        new("output name longer than the file system allows", 2, ["--output", "300 bytes"], s => s.Run(output: s.P(new string('n', 300)))),
        new("output cannot be written", 2, ["--output", "cannot write"], s => s.Run(output: "/proc/self/moenative-output.safetensors")),
        new("output name of 250 characters is legal", 0, [],
            s => s.Run(output: s.P(Path.Combine("out", new string('y', 238) + ".safetensors"))), Writes: true),

        // ---- error text ----------------------------------------------------------------------------------------------
        new("a 1 MiB tensor name is shortened", 2, ["hidden_states", "characters left out"],
            s => { CliTestData.WriteTensor(s.Input, new string('x', 1 << 20), [1, 32], new float[32]); return s.Run(); }),
        new("ANSI escapes in a name are escaped", 2, ["hidden_states", "\\x1B[31m"],
            s => { CliTestData.WriteTensor(s.Input, "\u001b[31mred\u001b[0m", [1, 32], new float[32]); return s.Run(); }),
    ];

    public static IEnumerable<object[]> Rows() => Cases.Select(c => new object[] { c.Name });

    [TestMethod]
    [DynamicData(nameof(Rows))]
    public void HostileInput_CleanOneLineErrorOrCorrectRun(string name)
    {
        Case c = Cases.Single(x => x.Name == name);
        if (!OperatingSystem.IsLinux() && (name.Contains("FIFO", StringComparison.Ordinal) || name.Contains("/dev/", StringComparison.Ordinal)
            || name.Contains("/proc", StringComparison.Ordinal) || name.Contains("hard link", StringComparison.Ordinal)))
            Assert.Inconclusive("needs Linux (FIFOs, /dev/zero, /proc, hard links)");
        using var files = new TempFolder("hostile");
        var setup = new Setup(files);
        string[] args = c.Arrange(setup);
        Dictionary<string, string> before = Hashes(files.Path("."));

        var task = Task.Run(() => CliHarness.Invoke(args));
        Assert.IsTrue(task.Wait(TimeSpan.FromSeconds(60)), $"{name}: the command hung (FIFO or endless file read?)");
        CliResult result = task.Result;
        TestContext.WriteLine(CliText.Sanitize(result.ToString().Replace('\n', ' ')));

        Assert.AreEqual(c.Exit, result.ExitCode, CliText.Sanitize(result.ToString()));
        if (c.Exit != 0)
        {
            string[] lines = result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.HasCount(1, lines, $"exactly one error line: {CliText.Sanitize(result.Error)}");
            string line = lines[0];
            Assert.StartsWith("error: ", line);
            Assert.IsLessThan(4096, line.Length, "the error line is bounded");
            Assert.DoesNotContain("   at ", line, "no stack trace");
            Assert.IsFalse(line.Any(ch => ch < 0x20 && ch != '\r' || ch is >= '\u007F' and <= '\u009F'), "no raw control character");
            foreach (string m in c.Mentions) Assert.Contains(m, line, $"the error names '{m}': {line}");
        }
        if (!c.Writes) Assert.IsFalse(Directory.Exists(files.Path("out")), "the output folder is not created before validation");
        else Assert.IsTrue(Directory.EnumerateFiles(files.Path("out")).Any(f => f.EndsWith(".safetensors", StringComparison.Ordinal)), "the output was written");
        string[] temps = Directory.EnumerateFiles(files.Path("."), "*.tmp", SearchOption.AllDirectories).ToArray();
        Assert.IsEmpty(temps, $"temp files left: {string.Join(", ", temps)}");
        foreach ((string path, string hash) in before)
            Assert.AreEqual(hash, Hash(path), $"input {path} changed");
    }

    /// <summary>The writer's own failure path: the rename onto an existing folder fails; the temp file is removed.</summary>
    [TestMethod]
    public void Writer_RenameFails_NoTempLeft_TargetUntouched()
    {
        using var files = new TempFolder("writer-fail");
        string target = files.Path("target");
        Directory.CreateDirectory(target);
        File.WriteAllText(Path.Combine(target, "keep"), "x");

        SafetensorsWriteException e = Assert.Throws<SafetensorsWriteException>(() =>
            SafetensorsWriter.Write(target, [SafetensorsEntry.FromFloats("a", [2], [1f, 2f])]));

        StringAssert.Contains(e.Message, target);
        Assert.IsEmpty(Directory.EnumerateFiles(files.Path("."), "*.tmp", SearchOption.AllDirectories).ToArray(), "temp file removed");
        Assert.AreEqual("x", File.ReadAllText(Path.Combine(target, "keep")));
    }

    // ---- set-up -----------------------------------------------------------------------------------------------------

    /// <summary>A valid tiny run (F32 weights, input [3,32], grad, config.json) in a temp folder; rows break one thing.</summary>
    private sealed class Setup
    {
        private readonly TempFolder _files;
        public readonly MoeConfig C = MoeConfig.Preset("tiny");
        public readonly MoeWeights W;

        public Setup(TempFolder files)
        {
            _files = files;
            Dir = files.Path(".");
            W = MoeWeights.Random(C, 12);
            CliTestData.WriteWeights(Weights, W, SafetensorsDType.F32, perExpert: false, layer: null);
            CliTestData.WriteTensor(Input, "hidden_states", [3, C.HiddenSize], TensorRandom.Normal(3L * C.HiddenSize, 13));
            CliTestData.WriteTensor(Grad, "grad_output", [3, C.HiddenSize], TensorRandom.Normal(3L * C.HiddenSize, 14));
            File.WriteAllText(Config, """{"model_type":"qwen3_moe","hidden_size":32,"moe_intermediate_size":16,"num_experts":8,"num_experts_per_tok":2,"norm_topk_prob":true}""");
        }

        public string Dir { get; }
        public string P(string relative) => _files.Path(relative);
        public string Weights => P("weights.safetensors");
        public string Input => P("input.safetensors");
        public string Grad => P("grad.safetensors");
        public string Config => P("config.json");

        public string[] Run(params string[] extra) => Run(null, null, null, null, extra);

        public string[] Run(string? output = null, string? weights = null, string? config = null, Action? prepare = null, params string[] extra)
        {
            prepare?.Invoke();
            return
            [
                "run", "--config", config ?? Config, "--weights", weights ?? Weights, "--input", Input, "--grad-output", Grad,
                "--output", output ?? P("out/y.safetensors"), "--device", "cpu", .. extra,
            ];
        }

        public string[] RunWithConfig(string json, params string[] extra)
        {
            File.WriteAllText(Config, json);
            return Run(null, null, null, null, extra);
        }

        /// <summary>A two-shard checkpoint folder with its index.</summary>
        public string Sharded()
        {
            string dir = P("ckpt");
            Directory.CreateDirectory(dir);
            long e = C.NumExperts, h = C.HiddenSize, i = C.IntermediateSize;
            SafetensorsWriter.Write(Path.Combine(dir, "model-00001-of-00002.safetensors"), [SafetensorsEntry.FromFloats("gate.weight", [e, h], W.Gate)]);
            SafetensorsWriter.Write(Path.Combine(dir, "model-00002-of-00002.safetensors"),
            [
                SafetensorsEntry.FromFloats("experts.gate_up_proj", [e, 2 * i, h], W.GateUpProj),
                SafetensorsEntry.FromFloats("experts.down_proj", [e, h, i], W.DownProj),
            ]);
            File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), """
                {"metadata":{},"weight_map":{"gate.weight":"model-00001-of-00002.safetensors",
                 "experts.gate_up_proj":"model-00002-of-00002.safetensors","experts.down_proj":"model-00002-of-00002.safetensors"}}
                """);
            return dir;
        }

        /// <summary>Writes a safetensors file from a raw header (padded with spaces to 8 bytes) and data bytes.</summary>
        public void RawSafetensors(string path, ReadOnlySpan<byte> header, byte[] data)
        {
            int padded = (header.Length + 7) / 8 * 8;
            using var f = new FileStream(path, FileMode.Create);
            f.Write(BitConverter.GetBytes((ulong)padded));
            f.Write(header);
            for (int k = header.Length; k < padded; k++) f.WriteByte((byte)' ');
            f.Write(data);
        }

        public void Poison(string path, string name, float value)
        {
            float[] x = TensorRandom.Normal(3L * C.HiddenSize, 13);
            x[5] = value;
            CliTestData.WriteTensor(path, name, [3, C.HiddenSize], x);
        }

        public void ScaleInput(float scale)
        {
            float[] x = TensorRandom.Normal(3L * C.HiddenSize, 13);
            for (int k = 0; k < x.Length; k++) x[k] = x[k] > 0 ? scale : -scale;
            CliTestData.WriteTensor(Input, "hidden_states", [3, C.HiddenSize], x);
        }

        public void PoisonRouter(float value)
        {
            float[] router = (float[])W.Gate.Clone();
            router[3] = value;
            CliTestData.WriteWeights(Weights, new MoeWeights(C, router, W.GateUpProj, W.DownProj), SafetensorsDType.F32, perExpert: false, layer: null);
        }
    }

    // ---- helpers ------------------------------------------------------------------------------------------------------

    private static Dictionary<string, string> Hashes(string dir) =>
        Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)
            .Where(f => HostFile.TryStat(f) is { Kind: HostFileKind.Regular, Length: < 16 << 20 } && !new FileInfo(f).Attributes.HasFlag(FileAttributes.ReparsePoint))
            .ToDictionary(f => f, Hash);

    private static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    private static void MakeFifo(string path)
    {
        if (mkfifo(path, 0b110_100_100) != 0) Assert.Inconclusive($"mkfifo failed (errno {Marshal.GetLastPInvokeError()})");
    }

    private static void HardLink(string existing, string link)
    {
        if (link_(existing, link) != 0) Assert.Inconclusive($"link failed (errno {Marshal.GetLastPInvokeError()})");
    }

    [LibraryImport("libc", EntryPoint = "mkfifo", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int mkfifo(string path, uint mode);

    [LibraryImport("libc", EntryPoint = "link", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int link_(string existing, string link);
}
