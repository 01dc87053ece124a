using System.Text.RegularExpressions;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Runtime;

/// <summary>Every specialisation the library can load: args structs vs .entry, naming, headers, no leftovers.</summary>
[TestClass]
public sealed partial class PtxCatalogTests
{
    private static readonly Lazy<IReadOnlyList<PtxModuleSpec>> Catalog = new(PtxCatalog.All);

    public static IEnumerable<object[]> Kernels() =>
        Catalog.Value.SelectMany(m => m.Kernels.Select(k => new object[] { m.ModuleName, k.EntryName }));

    public static IEnumerable<object[]> Modules() => Catalog.Value.Select(m => new object[] { m.ModuleName });

    public static IEnumerable<object[]> Files() => PtxLibrary.EmbeddedPaths.Where(p => !PtxLibrary.IsFragment(p)).Select(p => new object[] { p });

    public static IEnumerable<object[]> Fragments() => PtxLibrary.EmbeddedPaths.Where(PtxLibrary.IsFragment).Select(p => new object[] { p });

    private static PtxModuleSpec Module(string name) => Catalog.Value.Single(m => m.ModuleName == name);

    [TestMethod]
    [DynamicData(nameof(Kernels))]
    public void ArgsStruct_MatchesEntrySignature(string moduleName, string entryName)
    {
        PtxModuleSpec module = Module(moduleName);
        PtxKernelSpec kernel = module.Kernels.Single(k => k.EntryName == entryName);
        PtxSignature ptx = PtxSignature.Parse(module.Ptx, entryName);
        PtxSignature cs = PtxSignature.FromArgs(kernel.ArgsType);
        Assert.IsTrue(ptx.TypesMatch(cs), ptx.DescribeMismatch(cs));
    }

    [TestMethod]
    [DynamicData(nameof(Modules))]
    public void EveryEntry_IsCatalogued_AndNamesItsDtype(string moduleName)
    {
        PtxModuleSpec module = Module(moduleName);
        string[] entries = PtxSignature.ParseAll(module.Ptx).Select(s => s.EntryName).Order(StringComparer.Ordinal).ToArray();
        string[] listed = module.Kernels.Select(k => k.EntryName).Order(StringComparer.Ordinal).ToArray();
        CollectionAssert.AreEqual(entries, listed, $"{moduleName}: .entry list vs catalogue");
        Assert.AreEqual(entries.Length, entries.Distinct().Count());
        foreach (string entry in entries)
            Assert.IsTrue(DtypeSuffix().IsMatch(entry) || entry.Contains("_bf16_", StringComparison.Ordinal) ||
                          entry.Contains("_fp16_", StringComparison.Ordinal) || entry.Contains("_fp32_", StringComparison.Ordinal),
                $"{entry}: entry names carry their dtype (_bf16/_fp16/_fp32/_i32)");
    }

    [TestMethod]
    [DynamicData(nameof(Modules))]
    public void SpecialisedText_HasNoPlaceholders(string moduleName)
    {
        string ptx = Module(moduleName).Ptx;
        Assert.IsFalse(ptx.Contains("{{", StringComparison.Ordinal) || ptx.Contains("}}", StringComparison.Ordinal),
            $"{moduleName} still contains template braces");
    }

    [TestMethod]
    public void ModuleNames_AreUnique_AndSmallKernelsAreAllPresent()
    {
        string[] names = Catalog.Value.Select(m => m.ModuleName).ToArray();
        Assert.AreEqual(names.Length, names.Distinct().Count());
        foreach (string dtype in new[] { "bf16", "fp16", "fp32" })
            foreach (string file in new[] { "Routing/router_softmax_topk", "Elementwise/gather_rows", "Elementwise/silu_mul",
                                            "Elementwise/topk_combine", "Elementwise/sum_over_topk" })
                CollectionAssert.Contains(names, $"{file}.{dtype}");
        CollectionAssert.Contains(names, "Routing/routing_indices");
    }

    [TestMethod]
    [DynamicData(nameof(Files))]
    public void PtxFile_CarriesHeaderAndDirectives(string path)
    {
        string text = PtxLibrary.ReadEmbedded(path);
        Assert.IsTrue(text.TrimStart().StartsWith("//", StringComparison.Ordinal), $"{path}: starts with a header comment");
        string header = string.Join('\n', text.Split('\n').TakeWhile(l => !l.TrimStart().StartsWith(".version", StringComparison.Ordinal)));
        StringAssert.Contains(header, "ptxas", $"{path}: the header names the ptxas command that checks it");
        StringAssert.Matches(text, VersionDirective(), $"{path}: .version");
        StringAssert.Matches(text, TargetDirective(), $"{path}: .target sm_XX (or .target {{{{TARGET}}}})");
        StringAssert.Contains(text, ".address_size 64", $"{path}: .address_size 64");
        // NOTE: CUDA 13's JIT rejects any non-ASCII byte, comments included ("Unexpected non-ASCII character"),
        // while ptxas 11.8 accepts them: this check is the only one that runs everywhere.
        int bad = text.IndexOf(text.FirstOrDefault(c => c > 0x7F));
        Assert.IsTrue(text.All(c => c <= 0x7F),
            $"{path}: PTX must be ASCII only; first non-ASCII character at line {text[..Math.Max(bad, 0)].Count(c => c == '\n') + 1}");
    }

    [TestMethod]
    [DynamicData(nameof(Fragments))]
    public void Fragment_CarriesHeader_IsIncluded_AndIsNoModule(string path)
    {
        string text = PtxLibrary.ReadEmbedded(path);
        Assert.IsTrue(text.TrimStart().StartsWith("//", StringComparison.Ordinal), $"{path}: starts with a header comment");
        Assert.IsFalse(VersionDirective().IsMatch(text) || TargetDirective().IsMatch(text) || text.Contains(".address_size", StringComparison.Ordinal),
            $"{path}: a fragment has no module directives (.version, .target, .address_size)");
        Assert.IsTrue(text.All(c => c <= 0x7F), $"{path}: PTX must be ASCII only");
        Assert.IsTrue(ReachedFragments.Value.Contains(path), $"{path}: no module file includes this fragment (directly or through another)");
        Assert.IsFalse(Catalog.Value.Any(m => m.ModuleName.StartsWith(Path.ChangeExtension(path, null), StringComparison.Ordinal)),
            $"{path}: a fragment is never a catalog module");
    }

    [TestMethod]
    public void EmbeddedPaths_CoverEveryFamily_AndNoBuildOutput()
    {
        foreach (string family in new[] { "GroupedGemm/", "Routing/", "Elementwise/" })
            Assert.IsTrue(PtxLibrary.EmbeddedPaths.Any(p => p.StartsWith(family, StringComparison.Ordinal)), $"no embedded PTX under {family}");
        Assert.IsFalse(PtxLibrary.EmbeddedPaths.Any(p => p.StartsWith("bin/", StringComparison.Ordinal) || p.StartsWith("obj/", StringComparison.Ordinal) ||
                                                         p.Contains("/bin/", StringComparison.Ordinal) || p.Contains("/obj/", StringComparison.Ordinal)),
            string.Join(", ", PtxLibrary.EmbeddedPaths));
    }

    [TestMethod]
    public void ReadComposed_LeavesNoIncludeLine_InAnyModuleFile()
    {
        foreach (string path in PtxLibrary.EmbeddedPaths.Where(p => !PtxLibrary.IsFragment(p)))
            Assert.AreEqual(0, PtxTemplate.Includes(PtxLibrary.ReadComposed(path)).Count, $"{path}: composed text still includes");
    }

    // Every fragment a module file reaches when composed (through any chain of includes).
    private static readonly Lazy<IReadOnlyList<string>> ReachedFragments = new(() =>
    {
        var reached = new SortedSet<string>(StringComparer.Ordinal);
        foreach (string path in PtxLibrary.EmbeddedPaths.Where(p => !PtxLibrary.IsFragment(p)))
            PtxTemplate.Compose(PtxLibrary.ReadEmbedded(path), path, p => { reached.Add(p); return PtxLibrary.ReadEmbedded(p); });
        return reached.ToArray();
    });

    [TestMethod]
    public void ReadEmbedded_AcceptsEitherSeparator_AndRejectsUnknownFiles()
    {
        Assert.AreEqual(PtxLibrary.ReadEmbedded("Routing/routing_indices.ptx"), PtxLibrary.ReadEmbedded("Routing\\routing_indices.ptx"));
        var ex = Assert.ThrowsExactly<FileNotFoundException>(() => PtxLibrary.ReadEmbedded("Routing/nope.ptx"));
        StringAssert.Contains(ex.Message, "routing_indices.ptx");
    }

    [GeneratedRegex(@"_(bf16|fp16|fp32|i32)$")]
    private static partial Regex DtypeSuffix();

    [GeneratedRegex(@"(?m)^\s*\.version\s+\d+\.\d+")]
    private static partial Regex VersionDirective();

    [GeneratedRegex(@"(?m)^\s*\.target\s+(sm_\d+|\{\{TARGET\}\})")] // a number, or the placeholder of files specialised per target
    private static partial Regex TargetDirective();
}
