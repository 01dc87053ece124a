using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Runtime;

/// <summary>Step 1 of PtxTemplate: #include lines composed from fragments (an in-memory file set stands for the embedded one).</summary>
[TestClass]
public sealed class PtxIncludeTests
{
    private static Func<string, string> Files(params (string Path, string Text)[] files)
    {
        var map = files.ToDictionary(f => f.Path, f => f.Text);
        return path => map.TryGetValue(path, out string? text) ? text : throw new FileNotFoundException($"no file {path}");
    }

    [TestMethod]
    public void Include_IsReplacedByTheFragment_KeepingTheLinesAround()
    {
        var read = Files(("F/fragments/a.ptx", "    add.s32 x, x, 1;\n    add.s32 x, x, 2;\n"));
        string result = PtxTemplate.Compose("head;\n    #include \"F/fragments/a.ptx\"\ntail;\n", "F/k.ptx", read);
        Assert.AreEqual("head;\n    add.s32 x, x, 1;\n    add.s32 x, x, 2;\ntail;\n", result);
    }

    [TestMethod]
    public void Includes_AreComposedRecursively_AndValuesBindOnlyTheirFragment()
    {
        var read = Files(
            ("F/fragments/outer.ptx", "o {{ROWS}} {{KEEP}};\n#include \"F/fragments/inner.ptx\" STEP={{ROWS}}\n"),
            ("F/fragments/inner.ptx", "i {{STEP}} {{DTYPE}};\n"));
        string composed = PtxTemplate.Compose("#include \"F/fragments/outer.ptx\" ROWS=16 // rows per step\nk {{DTYPE}};", "F/k.ptx", read);
        Assert.AreEqual("o 16 {{KEEP}};\ni 16 {{DTYPE}};\nk {{DTYPE}};", composed);
        string specialised = PtxTemplate.Specialise(composed, new Dictionary<string, string> { ["KEEP"] = "k", ["DTYPE"] = "bf16" });
        Assert.AreEqual("o 16 k;\ni 16 bf16;\nk bf16;", specialised);
    }

    [TestMethod]
    public void Include_ValueChoosesTheNestedFragment_AndDoesNotLeakIntoIt()
    {
        var read = Files(
            ("F/fragments/entry.ptx", ".entry k_{{D}}() {\n#include \"F/fragments/unpack_{{D}}.ptx\" W=%w\n}\n"),
            ("F/fragments/unpack_bf16.ptx", "    shl.b32 {{W}}, 16; // {{D}}\n"),
            ("F/fragments/unpack_fp16.ptx", "    cvt.f32.f16 {{W}};\n"));
        string result = PtxTemplate.Compose("#include \"F/fragments/entry.ptx\" D=bf16\n#include \"F/fragments/entry.ptx\" D=fp16\n", "F/k.ptx", read);
        Assert.AreEqual(".entry k_bf16() {\n    shl.b32 %w, 16; // {{D}}\n}\n.entry k_fp16() {\n    cvt.f32.f16 %w;\n}\n", result);
    }

    [TestMethod]
    public void Include_PathWithUnboundPlaceholder_Throws()
    {
        var ex = Assert.ThrowsExactly<PtxTemplateException>(() =>
            PtxTemplate.Compose("x;\n#include \"F/fragments/unpack_{{D}}.ptx\"\n", "F/k.ptx", Files()));
        StringAssert.Contains(ex.Message, "F/k.ptx line 2");
        StringAssert.Contains(ex.Message, "{{D}}");
    }

    [TestMethod]
    public void Include_QuotedValue_KeepsSpacesAndEscapes()
    {
        var read = Files(("F/fragments/w.ptx", "    {{WIDEN}}\n"));
        string result = PtxTemplate.Compose("#include \"F/fragments/w.ptx\" WIDEN=\"mov.b32 s, {z, h}; // \\\"hi\\\" \\\\\"", "F/k.ptx", read);
        Assert.AreEqual("    mov.b32 s, {z, h}; // \"hi\" \\", result);
    }

    [TestMethod]
    public void Include_SameFragmentTwice_WithDifferentValues()
    {
        var read = Files(("F/fragments/e.ptx", ".entry k_{{T}}() { ret; }\n"));
        string result = PtxTemplate.Compose("#include \"F/fragments/e.ptx\" T=bf16\n#include \"F/fragments/e.ptx\" T=fp16\n", "F/k.ptx", read);
        Assert.AreEqual(".entry k_bf16() { ret; }\n.entry k_fp16() { ret; }\n", result);
    }

    [TestMethod]
    public void Include_Cycle_ThrowsNamingTheChainAndLine()
    {
        var read = Files(("F/fragments/a.ptx", "a;\n#include \"F/fragments/b.ptx\"\n"), ("F/fragments/b.ptx", "b;\nb;\n#include \"F/fragments/a.ptx\"\n"));
        var ex = Assert.ThrowsExactly<PtxTemplateException>(() => PtxTemplate.Compose("#include \"F/fragments/a.ptx\"\n", "F/k.ptx", read));
        StringAssert.Contains(ex.Message, "cycle");
        StringAssert.Contains(ex.Message, "F/k.ptx -> F/fragments/a.ptx -> F/fragments/b.ptx -> F/fragments/a.ptx");
        StringAssert.Contains(ex.Message, "F/fragments/b.ptx line 3");
    }

    [TestMethod]
    public void Include_SelfInclude_IsACycle()
    {
        var read = Files(("F/k.ptx", "x"));
        var ex = Assert.ThrowsExactly<PtxTemplateException>(() => PtxTemplate.Compose("#include \"F/k.ptx\"", "F/k.ptx", read));
        StringAssert.Contains(ex.Message, "F/k.ptx line 1");
    }

    [TestMethod]
    public void Include_MissingFragment_ThrowsNamingFileAndLine()
    {
        var read = Files(("F/fragments/a.ptx", "a;\n#include \"F/fragments/nope.ptx\"\n"));
        var ex = Assert.ThrowsExactly<PtxTemplateException>(() => PtxTemplate.Compose("x;\n#include \"F/fragments/a.ptx\"\n", "F/k.ptx", read));
        StringAssert.Contains(ex.Message, "F/fragments/a.ptx line 2");
        StringAssert.Contains(ex.Message, "F/fragments/nope.ptx");
        StringAssert.Contains(ex.Message, "F/k.ptx -> F/fragments/a.ptx");
    }

    [TestMethod]
    public void Include_ValueTheFragmentDoesNotUse_Throws()
    {
        var read = Files(("F/fragments/a.ptx", "a {{ROWS}};\n"));
        var ex = Assert.ThrowsExactly<PtxTemplateException>(() =>
            PtxTemplate.Compose("\n\n#include \"F/fragments/a.ptx\" ROWS=1 COLS=2\n", "F/k.ptx", read));
        StringAssert.Contains(ex.Message, "F/k.ptx line 3");
        StringAssert.Contains(ex.Message, "COLS");
        CollectionAssert.AreEqual(new[] { "COLS" }, ex.Unknown.ToArray());
    }

    [TestMethod]
    [DataRow("#include F/fragments/a.ptx")]
    [DataRow("#include \"F/fragments/a.ptx\" ROWS")]
    [DataRow("#include \"F/fragments/a.ptx\" ROWS=\"open")]
    [DataRow("#include \"F/fragments/a.ptx\" ROWS=1 ROWS=2")]
    [DataRow("#include")]
    public void Include_MalformedLine_ThrowsNamingFileAndLine(string line)
    {
        var read = Files(("F/fragments/a.ptx", "a {{ROWS}};\n"));
        var ex = Assert.ThrowsExactly<PtxTemplateException>(() => PtxTemplate.Compose("x;\n" + line + "\n", "F/k.ptx", read));
        StringAssert.Contains(ex.Message, "F/k.ptx line 2");
    }

    [TestMethod]
    public void Include_DeeperThanTheLimit_Throws()
    {
        var files = Enumerable.Range(0, PtxTemplate.MaxIncludeDepth + 2)
            .Select(i => ($"F/fragments/f{i}.ptx", $"#include \"F/fragments/f{i + 1}.ptx\"\n")).ToArray();
        var ex = Assert.ThrowsExactly<PtxTemplateException>(() => PtxTemplate.Compose("#include \"F/fragments/f0.ptx\"", "F/k.ptx", Files(files)));
        StringAssert.Contains(ex.Message, "deeper");
    }

    [TestMethod]
    public void Specialise_UncomposedInclude_Throws()
    {
        var ex = Assert.ThrowsExactly<PtxTemplateException>(() =>
            PtxTemplate.Specialise("x;\n  #include \"F/fragments/a.ptx\"\n", new Dictionary<string, string>()));
        StringAssert.Contains(ex.Message, "line 2");
    }

    [TestMethod]
    public void Includes_ListsTheDirectIncludes()
    {
        CollectionAssert.AreEqual(new[] { "A/fragments/x.ptx", "B/fragments/y.ptx" },
            PtxTemplate.Includes("a;\n #include \"A/fragments/x.ptx\" N=1\n// #include \"C/no.ptx\"\n#include \"B\\fragments/y.ptx\"\n").ToArray());
    }

    [TestMethod]
    public void Compose_TextWithoutIncludes_IsUnchanged()
    {
        const string text = "// #include \"in a comment\"\nret;\r\n";
        Assert.AreSame(text, PtxTemplate.Compose(text, "F/k.ptx", Files()));
    }
}
