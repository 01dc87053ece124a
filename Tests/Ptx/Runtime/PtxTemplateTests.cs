using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Runtime;

[TestClass]
public sealed class PtxTemplateTests
{
    private static Dictionary<string, string> Values(params (string Key, string Value)[] pairs) =>
        pairs.ToDictionary(p => p.Key, p => p.Value);

    [TestMethod]
    public void Specialise_ReplacesEveryOccurrence()
    {
        string text = "ld.{{SREG}} x; // {{DTYPE}}\n.entry k_{{DTYPE}}()";
        string result = PtxTemplate.Specialise(text, Values(("SREG", "b16"), ("DTYPE", "bf16")));
        Assert.AreEqual("ld.b16 x; // bf16\n.entry k_bf16()", result);
    }

    [TestMethod]
    public void Placeholders_ListsDistinctNamesInOrder()
    {
        CollectionAssert.AreEqual(new[] { "B", "A" }, PtxTemplate.Placeholders("{{B}} {{A}} {{B}}").ToArray());
    }

    [TestMethod]
    public void Specialise_MissingValue_ThrowsNamingEveryMissingPlaceholder()
    {
        var ex = Assert.ThrowsExactly<PtxTemplateException>(() =>
            PtxTemplate.Specialise("{{A}} {{TILE_M}} {{TILE_N}}", Values(("A", "1"))));
        CollectionAssert.AreEqual(new[] { "TILE_M", "TILE_N" }, ex.Missing.ToArray());
        StringAssert.Contains(ex.Message, "{{TILE_M}}");
        StringAssert.Contains(ex.Message, "{{TILE_N}}");
    }

    [TestMethod]
    public void Specialise_UnknownValue_ThrowsNamingIt()
    {
        var ex = Assert.ThrowsExactly<PtxTemplateException>(() =>
            PtxTemplate.Specialise("{{A}}", Values(("A", "1"), ("STAGES", "3"))));
        CollectionAssert.AreEqual(new[] { "STAGES" }, ex.Unknown.ToArray());
        StringAssert.Contains(ex.Message, "STAGES");
    }

    [TestMethod]
    [DataRow("{{ A}}")]
    [DataRow("{{A-B}}")]
    [DataRow("x }} y")]
    public void Specialise_MalformedBraces_Throw(string text)
    {
        Assert.ThrowsExactly<PtxTemplateException>(() => PtxTemplate.Specialise(text, Values()));
    }

    [TestMethod]
    public void Specialise_ValueContainingPlaceholder_Throws()
    {
        var ex = Assert.ThrowsExactly<PtxTemplateException>(() => PtxTemplate.Specialise("{{A}}", Values(("A", "{{B}}"))));
        StringAssert.Contains(ex.Message, "A");
    }

    [TestMethod]
    public void Specialise_TextWithoutPlaceholders_IsUnchanged()
    {
        Assert.AreEqual("ret;", PtxTemplate.Specialise("ret;", Values()));
    }
}
