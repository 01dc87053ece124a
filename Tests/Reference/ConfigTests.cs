using MoeNative.Reference;

namespace MoeNative.Tests.Reference;

[TestClass]
public sealed class ConfigTests
{
    [TestMethod]
    [DataRow("qwen3-30b-a3b", 2048, 768, 128, 8, true)]
    [DataRow("qwen3-235b-a22b", 4096, 1536, 128, 8, true)]
    [DataRow("tiny", 32, 16, 8, 2, true)]
    [DataRow("tiny-nonorm", 32, 16, 8, 2, false)]
    [DataRow("small-k1", 64, 32, 16, 1, true)]
    [DataRow("QWEN3-30B-A3B", 2048, 768, 128, 8, true, DisplayName = "names are case-insensitive")]
    public void PresetsHaveTheirDocumentedShapes(string name, int h, int i, int e, int k, bool norm)
    {
        MoeConfig c = MoeConfig.Preset(name);
        Assert.AreEqual((h, i, e, k, norm, "silu"), (c.HiddenSize, c.IntermediateSize, c.NumExperts, c.TopK, c.NormTopKProb, c.HiddenAct));
    }

    [TestMethod]
    public void EveryPresetLoadsAndIsListed()
    {
        Assert.IsGreaterThanOrEqualTo(6, MoeConfig.PresetNames.Count);
        CollectionAssert.Contains(MoeConfig.PresetNames.ToList(), "qwen3-30b-a3b");
        foreach (string name in MoeConfig.PresetNames) Assert.AreEqual(name, MoeConfig.Preset(name).Name);
    }

    [TestMethod]
    public void HuggingFaceConfigIsReadIgnoringOtherFields()
    {
        const string json = """
            { "architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 2048, "moe_intermediate_size": 768,
              "intermediate_size": 6144, "num_experts": 128, "num_experts_per_tok": 8, "norm_topk_prob": true,
              "hidden_act": "silu", "rope_theta": 1000000.0, "mlp_only_layers": [], "torch_dtype": "bfloat16" }
            """;
        MoeConfig c = MoeConfig.FromJson(json);
        Assert.AreEqual(MoeConfig.Preset("qwen3-30b-a3b") with { Name = null }, c with { Name = null });
    }

    [TestMethod]
    public void NormTopKProbDefaultsToFalseLikeHuggingFace()
    {
        MoeConfig c = MoeConfig.FromJson("""{"hidden_size": 8, "moe_intermediate_size": 4, "num_experts": 4, "num_experts_per_tok": 2}""");
        Assert.IsFalse(c.NormTopKProb);
    }

    [TestMethod]
    public void NestedTextConfigIsRead()
    {
        MoeConfig c = MoeConfig.FromJson("""{"model_type": "qwen3_vl_moe", "text_config": {"model_type": "qwen3_moe", "hidden_size": 8, "moe_intermediate_size": 4, "num_experts": 4, "num_experts_per_tok": 2}}""");
        Assert.AreEqual(8, c.HiddenSize);
    }

    [TestMethod]
    public void FromFileAcceptsAFileOrItsDirectory()
    {
        DirectoryInfo dir = Directory.CreateTempSubdirectory("moenative-config-");
        try
        {
            File.WriteAllText(Path.Combine(dir.FullName, "config.json"), """{"hidden_size": 16, "moe_intermediate_size": 8, "num_experts": 4, "num_experts_per_tok": 1}""");
            Assert.AreEqual(16, MoeConfig.FromFile(dir.FullName).HiddenSize);
            Assert.AreEqual(16, MoeConfig.Resolve(Path.Combine(dir.FullName, "config.json")).HiddenSize);
        }
        finally { dir.Delete(true); }
    }

    [TestMethod]
    [DataRow("""{"hidden_size": 8, "moe_intermediate_size": 4, "num_experts": 4, "num_experts_per_tok": 2, "hidden_act": "gelu"}""", "hidden_act 'gelu' is not supported")]
    [DataRow("""{"hidden_size": 8, "moe_intermediate_size": 4, "num_experts": 4, "num_experts_per_tok": 5}""", "num_experts_per_tok must be in [1, num_experts=4]")]
    [DataRow("""{"hidden_size": 8, "moe_intermediate_size": 4, "num_experts": 4, "num_experts_per_tok": 0}""", "num_experts_per_tok must be in")]
    [DataRow("""{"hidden_size": 0, "moe_intermediate_size": 4, "num_experts": 4, "num_experts_per_tok": 2}""", "hidden_size must be positive")]
    [DataRow("""{"hidden_size": 8, "moe_intermediate_size": -4, "num_experts": 4, "num_experts_per_tok": 2}""", "moe_intermediate_size must be positive")]
    public void InvalidValuesAreRejected(string json, string expected)
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => MoeConfig.FromJson(json));
        StringAssert.Contains(e.Message, expected);
    }

    [TestMethod]
    [DataRow("""{"hidden_size": 8, "moe_intermediate_size": 4, "num_experts": 4}""", "required field 'num_experts_per_tok' is missing")]
    [DataRow("""{"hidden_size": "8", "moe_intermediate_size": 4, "num_experts": 4, "num_experts_per_tok": 2}""", "field 'hidden_size' must be an integer")]
    [DataRow("""{"hidden_size": 8, "moe_intermediate_size": 4, "num_experts": 4, "num_experts_per_tok": 2, "norm_topk_prob": 1}""", "'norm_topk_prob' must be true or false")]
    [DataRow("""[1, 2]""", "expected a JSON object")]
    [DataRow("""{"hidden_size": 8,""", "not valid JSON")]
    public void MalformedConfigsAreRejected(string json, string expected)
    {
        FormatException e = Assert.Throws<FormatException>(() => MoeConfig.FromJson(json));
        StringAssert.Contains(e.Message, expected);
    }

    [TestMethod]
    public void UnknownPresetListsThePresets()
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => MoeConfig.Resolve("qwen9"));
        StringAssert.Contains(e.Message, "qwen3-30b-a3b");
    }
}
