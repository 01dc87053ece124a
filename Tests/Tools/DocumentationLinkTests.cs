using System.Text.RegularExpressions;

namespace MoeNative.Tests.Tools;

/// <summary>Docs point at files in the repository: every <c>docs/NAME.md</c> named in a source file, script or doc
/// exists, and no file names a design note that is not in the repository (a bare DESIGN.md, HOPPER.md, STYLE.md,
/// DEVICE.md outside docs/).</summary>
[TestClass]
public sealed partial class DocumentationLinkTests
{
    private static readonly string[] s_extensions = [".cs", ".md", ".ptx", ".sh", ".props", ".targets", ".csproj"];

    private static IEnumerable<string> RepositoryTextFiles()
    {
        string root = RepositoryFiles.Root;
        return Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Where(f => s_extensions.Contains(Path.GetExtension(f)))
            .Where(f => !Path.GetRelativePath(root, f).Split(Path.DirectorySeparatorChar)
                .Any(part => part is "bin" or "obj" or "TestResults" or "artifacts" || part.StartsWith('.')));
    }

    [TestMethod]
    public void EveryDocsReference_NamesAFileThatExists()
    {
        var missing = new List<string>();
        int references = 0;
        foreach (string file in RepositoryTextFiles().Where(f => !f.EndsWith("DocumentationLinkTests.cs", StringComparison.Ordinal)))
        {
            foreach (Match m in DocsReference().Matches(File.ReadAllText(file)))
            {
                references++;
                if (!File.Exists(RepositoryFiles.Path(m.Value)))
                    missing.Add($"{Path.GetRelativePath(RepositoryFiles.Root, file)}: {m.Value}");
            }
        }
        Assert.IsGreaterThan(5, references, "the scan found the docs/ references (README, sources)");
        Assert.IsEmpty(missing, string.Join("\n", missing));
        Assert.IsTrue(File.Exists(RepositoryFiles.Path("docs/DESIGN.md")), "docs/DESIGN.md");
    }

    [TestMethod]
    public void NoFile_NamesADesignNoteOutsideTheRepository()
    {
        var bare = new List<string>();
        foreach (string file in RepositoryTextFiles())
        {
            string relative = Path.GetRelativePath(RepositoryFiles.Root, file).Replace('\\', '/');
            if (relative == "Tests/Tools/DocumentationLinkTests.cs") continue;
            string text = File.ReadAllText(file);
            foreach (Match m in BareNote().Matches(text))
            {
                // inside docs/ a sibling is named without the folder ([PERF.md](PERF.md)); it must exist there
                bool sibling = relative.StartsWith("docs/", StringComparison.Ordinal) && File.Exists(RepositoryFiles.Path("docs/" + m.Value));
                if (!sibling) bare.Add($"{relative}: {m.Value}");
            }
        }
        Assert.IsEmpty(bare, string.Join("\n", bare));
    }

    /// <summary>docs/NAME.md (a path the repository should hold).</summary>
    [GeneratedRegex(@"(?<![\w/.])docs/[A-Za-z0-9_-]+\.md")]
    private static partial Regex DocsReference();

    /// <summary>A design note named without the docs/ folder (DESIGN.md, HOPPER.md, STYLE.md, DEVICE.md).</summary>
    [GeneratedRegex(@"(?<![\w/.])(?<name>DESIGN|HOPPER|STYLE|DEVICE)\.md")]
    private static partial Regex BareNote();
}
