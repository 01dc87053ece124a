using System.Buffers.Binary;
using System.Text;
using MoeNative.Reference;
using MoeNative.Reference.IO;
using MoeNative.Tests.Support;
using MoeNative.Interop;

namespace MoeNative.Tests.Reference;

[TestClass]
public sealed class SafetensorsTests
{
    private DirectoryInfo _dir = null!;

    [TestInitialize]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("moenative-st-");

    [TestCleanup]
    public void DeleteDirectory() => _dir.Delete(recursive: true);

    private string PathOf(string name) => Path.Combine(_dir.FullName, name);

    [TestMethod]
    public void RoundTripKeepsEveryDtypeShapeAndMetadata()
    {
        float[] f = [1.5f, -2.25f, 3.0e-3f, 65504f, -0.0f, 7f];
        float[] bf = [1f, -3.140625f, 0.5f, (float)Math.Pow(2, 100)];
        float[] h = [0.5f, -1.25f, 2048f];
        string path = PathOf("rt.safetensors");
        SafetensorsWriter.Write(path,
        [
            SafetensorsEntry.FromFloats("f32", [2, 3], f),
            SafetensorsEntry.FromFloats("bf16", [4], bf, SafetensorsDType.BF16),
            SafetensorsEntry.FromFloats("f16", [1, 3], h, SafetensorsDType.F16),
            SafetensorsEntry.FromInt32("i32", [3], [1, -2, int.MaxValue]),
            SafetensorsEntry.FromInt64("i64", [2], [long.MinValue, 5]),
            SafetensorsEntry.FromFloats("empty", [0, 4], []),
        ], new Dictionary<string, string> { ["format"] = "pt" });

        using SafetensorsFile file = SafetensorsFile.Open(path);
        Assert.AreEqual("pt", file.Metadata["format"]);
        CollectionAssert.AreEqual(new long[] { 2, 3 }, file.Info("f32").Shape);
        CollectionAssert.AreEqual(f, file.ReadFloat32("f32", [2, 3]));
        CollectionAssert.AreEqual(bf, file.ReadFloat32("bf16"));
        CollectionAssert.AreEqual(h, file.ReadFloat32("f16"));
        CollectionAssert.AreEqual(new[] { 1, -2, int.MaxValue }, file.ReadInt32("i32"));
        CollectionAssert.AreEqual(new[] { long.MinValue, 5L }, file.ReadInt64("i64"));
        Assert.IsEmpty(file.ReadFloat32("empty"));
        Assert.AreEqual(0, (BinaryPrimitives.ReadInt64LittleEndian(File.ReadAllBytes(path)) % 8), "header padded to 8 bytes");
    }

    [TestMethod]
    public void Bf16WriteRoundsToNearestEven()
    {
        string path = PathOf("round.safetensors");
        float x = BitConverter.Int32BitsToSingle(0x3F80_8000); // exactly halfway between 1.0 and the next bf16: ties to even -> 1.0
        float y = BitConverter.Int32BitsToSingle(0x3F81_8000); // halfway, odd kept half -> rounds up
        SafetensorsWriter.Write(path, [SafetensorsEntry.FromFloats("t", [2], [x, y], SafetensorsDType.BF16)]);
        using SafetensorsFile file = SafetensorsFile.Open(path);
        CollectionAssert.AreEqual(new[] { 1f, BitConverter.Int32BitsToSingle(0x3F82_0000) }, file.ReadFloat32("t"));
    }

    private string WriteRaw(string name, string header, int dataBytes, long? declaredHeaderLength = null)
    {
        byte[] h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteInt64LittleEndian(bytes, declaredHeaderLength ?? h.Length);
        h.CopyTo(bytes, 8);
        string path = PathOf(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [TestMethod]
    [DataRow("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8, "run past the end", DisplayName = "truncated data")]
    [DataRow("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12, "overlap", DisplayName = "overlapping tensors")]
    [DataRow("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}""", 16, "hole", DisplayName = "hole between tensors")]
    [DataRow("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 12, "trailing bytes", DisplayName = "trailing bytes")]
    [DataRow("""{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}}""", 16, "F16 [4] needs 8 bytes", DisplayName = "mistyped: byte range of F32 declared F16")]
    [DataRow("""{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4, "bad shape", DisplayName = "negative dimension")]
    [DataRow("""{"a":{"dtype":"F32","shape":[1]}}""", 4, "missing 'data_offsets'", DisplayName = "missing offsets")]
    [DataRow("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}""", 4, "bad data_offsets", DisplayName = "reversed offsets")]
    [DataRow("""{"a": 3""", 0, "not valid JSON", DisplayName = "broken JSON")]
    public void InvalidFilesAreRejectedNamingTheProblem(string header, int dataBytes, string expected)
    {
        string path = WriteRaw("bad.safetensors", header, dataBytes);
        SafetensorsFormatException e = Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(path));
        StringAssert.Contains(e.Message, expected);
        StringAssert.Contains(e.Message, path, "the message names the file");
    }

    [TestMethod]
    public void HeaderLongerThanTheFileIsReportedAsTruncated()
    {
        string path = WriteRaw("trunc.safetensors", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4, declaredHeaderLength: 4096);
        SafetensorsFormatException e = Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(path));
        StringAssert.Contains(e.Message, "truncated");
    }

    [TestMethod]
    public void ShorterThanTheLengthFieldIsReportedAsTruncated()
    {
        string path = PathOf("tiny.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        StringAssert.Contains(Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(path)).Message, "truncated");
    }

    [TestMethod]
    public void ReadingWithTheWrongDtypeOrShapeNamesTheTensor()
    {
        string path = PathOf("types.safetensors");
        SafetensorsWriter.Write(path, [SafetensorsEntry.FromInt32("ids", [2], [1, 2]), SafetensorsEntry.FromFloats("w", [2, 2], [1, 2, 3, 4])]);
        using SafetensorsFile file = SafetensorsFile.Open(path);
        StringAssert.Contains(Assert.Throws<SafetensorsFormatException>(() => file.ReadFloat32("ids")).Message, "tensor 'ids' has dtype I32");
        StringAssert.Contains(Assert.Throws<SafetensorsFormatException>(() => file.ReadFloat32("w", [4])).Message, "tensor 'w' has shape [2,2], expected [4]");
        StringAssert.Contains(Assert.Throws<KeyNotFoundException>(() => file.ReadFloat32("nope")).Message, "'nope'");
    }

    [TestMethod]
    public void UnknownDtypesAreListedButNotReadable()
    {
        string path = WriteRaw("u8.safetensors", """{"m":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}""", 4);
        using SafetensorsFile file = SafetensorsFile.Open(path);
        Assert.IsNull(file.Info("m").DType);
        StringAssert.Contains(Assert.Throws<SafetensorsFormatException>(() => file.ReadFloat32("m")).Message, "dtype U8");
    }

    [TestMethod]
    public void WriterRejectsDuplicateNamesAndWrongSizes()
    {
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(PathOf("d.safetensors"),
            [SafetensorsEntry.FromFloats("a", [1], [1f]), SafetensorsEntry.FromFloats("a", [1], [2f])]));
        Assert.Throws<ArgumentException>(() => SafetensorsEntry.FromFloats("a", [3], [1f, 2f]));
    }

    // ---- checkpoint layouts -------------------------------------------------------------------------------------

    private static IEnumerable<SafetensorsEntry> FusedEntries(MoeWeights w, string prefix, SafetensorsDType dtype)
    {
        MoeConfig c = w.Config;
        long e = c.NumExperts, h = c.HiddenSize, i = c.IntermediateSize;
        yield return SafetensorsEntry.FromFloats(prefix + "gate.weight", [e, h], w.Gate, dtype);
        yield return SafetensorsEntry.FromFloats(prefix + "experts.gate_up_proj", [e, 2 * i, h], w.GateUpProj, dtype);
        yield return SafetensorsEntry.FromFloats(prefix + "experts.down_proj", [e, h, i], w.DownProj, dtype);
    }

    private static IEnumerable<SafetensorsEntry> PerExpertEntries(MoeWeights w, string prefix)
    {
        MoeConfig c = w.Config;
        long h = c.HiddenSize, i = c.IntermediateSize;
        yield return SafetensorsEntry.FromFloats(prefix + "gate.weight", [c.NumExperts, h], w.Gate);
        for (int e = 0; e < c.NumExperts; e++)
        {
            yield return SafetensorsEntry.FromFloats($"{prefix}experts.{e}.gate_proj.weight", [i, h], w.GateProjOf(e));
            yield return SafetensorsEntry.FromFloats($"{prefix}experts.{e}.up_proj.weight", [i, h], w.UpProjOf(e));
            yield return SafetensorsEntry.FromFloats($"{prefix}experts.{e}.down_proj.weight", [h, i], w.DownProjOf(e));
        }
    }

    [TestMethod]
    [DataRow(null, SafetensorsDType.F32)]
    [DataRow(3, SafetensorsDType.BF16)]
    [DataRow(0, SafetensorsDType.F16)]
    public void FusedLayoutLoads(int? layer, SafetensorsDType dtype)
    {
        MoeConfig c = MoeConfig.Preset("tiny");
        ScalarType st = dtype.ToScalarType()!.Value;
        MoeWeights w = MoeWeights.Random(c, 11, st);
        string path = PathOf("fused.safetensors");
        SafetensorsWriter.Write(path, FusedEntries(w, MoeCheckpoint.Prefix(layer), dtype));
        MoeWeights loaded = MoeCheckpoint.LoadWeights(c, path, layer, st);
        CollectionAssert.AreEqual(w.Gate, loaded.Gate);
        CollectionAssert.AreEqual(w.GateUpProj, loaded.GateUpProj);
        CollectionAssert.AreEqual(w.DownProj, loaded.DownProj);
    }

    [TestMethod]
    public void PerExpertLayoutLoadsFromAShardedDirectory()
    {
        MoeConfig c = MoeConfig.Preset("tiny");
        MoeWeights w = MoeWeights.Random(c, 12);
        string prefix = MoeCheckpoint.Prefix(1);
        List<SafetensorsEntry> all = PerExpertEntries(w, prefix).ToList();
        // Two shards plus an unrelated tensor, and the index that maps names to shards.
        List<SafetensorsEntry> shard1 = all.Take(all.Count / 2).Append(SafetensorsEntry.FromFloats("model.embed_tokens.weight", [2, 2], [1, 2, 3, 4])).ToList();
        List<SafetensorsEntry> shard2 = all.Skip(all.Count / 2).ToList();
        SafetensorsWriter.Write(PathOf("model-00001-of-00002.safetensors"), shard1);
        SafetensorsWriter.Write(PathOf("model-00002-of-00002.safetensors"), shard2);
        var map = string.Join(",\n", shard1.Select(t => $"\"{t.Name}\": \"model-00001-of-00002.safetensors\"")
            .Concat(shard2.Select(t => $"\"{t.Name}\": \"model-00002-of-00002.safetensors\"")));
        File.WriteAllText(PathOf("model.safetensors.index.json"), """{"metadata": {"total_size": 0}, "weight_map": {""" + map + "} }");

        MoeWeights loaded = MoeCheckpoint.LoadWeights(c, _dir.FullName, layer: 1);
        CollectionAssert.AreEqual(w.GateUpProj, loaded.GateUpProj);
        CollectionAssert.AreEqual(w.DownProj, loaded.DownProj);
        CollectionAssert.AreEqual(w.Gate, loaded.Gate);
    }

    [TestMethod]
    public void MissingTensorNamesTheTensorAndExpectedShape()
    {
        MoeConfig c = MoeConfig.Preset("tiny");
        MoeWeights w = MoeWeights.Random(c, 13);
        string path = PathOf("missing.safetensors");
        SafetensorsWriter.Write(path, FusedEntries(w, "", SafetensorsDType.F32).Where(t => t.Name != "experts.down_proj"));
        SafetensorsFormatException e = Assert.Throws<SafetensorsFormatException>(() => MoeCheckpoint.LoadWeights(c, path));
        StringAssert.Contains(e.Message, "'experts.down_proj'");
        StringAssert.Contains(e.Message, "[E,H,I]=[8,32,16]");
    }

    [TestMethod]
    public void WrongShapeNamesTheTensorAndBothShapes()
    {
        MoeConfig c = MoeConfig.Preset("tiny");
        MoeConfig other = MoeConfig.Preset("tiny-k1");
        string path = PathOf("shape.safetensors");
        SafetensorsWriter.Write(path, FusedEntries(MoeWeights.Random(other, 14), "", SafetensorsDType.F32));
        SafetensorsFormatException e = Assert.Throws<SafetensorsFormatException>(() => MoeCheckpoint.LoadWeights(c, path));
        StringAssert.Contains(e.Message, "tensor 'gate.weight' has shape [4,24], expected [E,H]=[8,32]");
    }

    [TestMethod]
    public void PrefixedNamesWithoutALayerGetAHint()
    {
        MoeConfig c = MoeConfig.Preset("tiny");
        string path = PathOf("hint.safetensors");
        SafetensorsWriter.Write(path, FusedEntries(MoeWeights.Random(c, 15), MoeCheckpoint.Prefix(2), SafetensorsDType.F32));
        SafetensorsFormatException e = Assert.Throws<SafetensorsFormatException>(() => MoeCheckpoint.LoadWeights(c, path));
        StringAssert.Contains(e.Message, "'gate.weight'");
        e = Assert.Throws<SafetensorsFormatException>(() => MoeCheckpoint.LoadWeights(c, path, layer: 5));
        StringAssert.Contains(e.Message, "model.layers.5.mlp.gate.weight");
    }

    [TestMethod]
    public void IntegerWeightsAreADtypeError()
    {
        var c = new MoeConfig(2, 1, 2, 1);
        string path = PathOf("int.safetensors");
        SafetensorsWriter.Write(path,
        [
            SafetensorsEntry.FromInt32("gate.weight", [2, 2], [1, 2, 3, 4]),
            SafetensorsEntry.FromFloats("experts.gate_up_proj", [2, 2, 2], new float[8]),
            SafetensorsEntry.FromFloats("experts.down_proj", [2, 2, 1], new float[4]),
        ]);
        StringAssert.Contains(Assert.Throws<SafetensorsFormatException>(() => MoeCheckpoint.LoadWeights(c, path)).Message,
            "tensor 'gate.weight' has dtype I32");
    }

    // ---- run end to end -------------------------------------------------------------------------------------------

    [TestMethod]
    [DataRow("hf", ScalarType.BFloat16)]
    [DataRow("grouped", ScalarType.Float32)]
    public void RunWritesOutputsAndGradientsAsF32(string impl, ScalarType dtype)
    {
        MoeConfig c = MoeConfig.Preset("tiny");
        MoeWeights w = MoeWeights.Random(c, 16, dtype);
        string weights = PathOf("w.safetensors"), input = PathOf("in.safetensors"), grad = PathOf("g.safetensors"), output = PathOf("out.safetensors");
        SafetensorsWriter.Write(weights, FusedEntries(w, MoeCheckpoint.Prefix(0), SafetensorsDTypes.From(dtype)));
        float[] x = TensorRandom.Normal(2 * 3 * c.HiddenSize, 17, 1f, dtype);
        float[] dY = TensorRandom.Normal(2 * 3 * c.HiddenSize, 18, 1f, dtype);
        SafetensorsWriter.Write(input, [SafetensorsEntry.FromFloats("hidden_states", [2, 3, c.HiddenSize], x)]);
        SafetensorsWriter.Write(grad, [SafetensorsEntry.FromFloats("grad_output", [2, 3, c.HiddenSize], dY)]);

        MoeRunSummary summary = MoeLayerRunner.Run(new MoeRunOptions
        {
            Config = "tiny", Weights = weights, Layer = 0, Input = input, GradOutput = grad, Output = output, Implementation = impl, DType = dtype,
        });
        Assert.AreEqual(6, summary.Tokens);

        // The oracle: the same reference called directly on the in-memory tensors.
        MoeReference block = MoeReference.Create(impl, w, dtype);
        MoeIntermediates f = block.Forward(x);
        MoeGradients g = block.Backward(dY);
        using SafetensorsFile result = SafetensorsFile.Open(output);
        foreach (SafetensorsTensorInfo t in result.Tensors.Values) Assert.AreEqual(SafetensorsDType.F32, t.DType, t.Name);
        CollectionAssert.AreEqual(f.Output, result.ReadFloat32("output", [2, 3, c.HiddenSize]));
        CollectionAssert.AreEqual(f.RouterLogits, result.ReadFloat32("router_logits", [6, c.NumExperts]));
        CollectionAssert.AreEqual(g.HiddenStates, result.ReadFloat32("grad_hidden_states", [2, 3, c.HiddenSize]));
        CollectionAssert.AreEqual(g.Gate, result.ReadFloat32("grad_gate", [c.NumExperts, c.HiddenSize]));
        CollectionAssert.AreEqual(g.GateProj, result.ReadFloat32("grad_gate_proj", [c.NumExperts, c.IntermediateSize, c.HiddenSize]));
        CollectionAssert.AreEqual(g.UpProj, result.ReadFloat32("grad_up_proj", [c.NumExperts, c.IntermediateSize, c.HiddenSize]));
        CollectionAssert.AreEqual(g.DownProj, result.ReadFloat32("grad_down_proj", [c.NumExperts, c.HiddenSize, c.IntermediateSize]));
    }

    [TestMethod]
    public void RunRejectsAGradOfAnotherShape()
    {
        MoeConfig c = MoeConfig.Preset("tiny");
        string weights = PathOf("w.safetensors"), input = PathOf("in.safetensors"), grad = PathOf("g.safetensors");
        SafetensorsWriter.Write(weights, FusedEntries(MoeWeights.Random(c, 19), "", SafetensorsDType.F32));
        SafetensorsWriter.Write(input, [SafetensorsEntry.FromFloats("hidden_states", [4, c.HiddenSize], new float[4 * c.HiddenSize])]);
        SafetensorsWriter.Write(grad, [SafetensorsEntry.FromFloats("grad_output", [2, c.HiddenSize], new float[2 * c.HiddenSize])]);
        var options = new MoeRunOptions { Config = "tiny", Weights = weights, Input = input, GradOutput = grad, Output = PathOf("o.safetensors") };
        StringAssert.Contains(Assert.Throws<SafetensorsFormatException>(() => MoeLayerRunner.Run(options)).Message,
            "tensor 'grad_output' has shape [2,32], expected the input's shape [4,32]");
        SafetensorsWriter.Write(input, [SafetensorsEntry.FromFloats("x", [4, c.HiddenSize], new float[4 * c.HiddenSize])]);
        StringAssert.Contains(Assert.Throws<SafetensorsFormatException>(() => MoeLayerRunner.Run(options)).Message, "missing tensor 'hidden_states'");
    }
}
