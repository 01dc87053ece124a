using System.Diagnostics;
using System.Text.RegularExpressions;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Runtime;

/// <summary>
/// Assembles every catalogued specialisation with ptxas (the PTXAS env var, else ptxas on PATH, /usr/local/cuda/bin,
/// /opt/cuda124/usr/bin: <see cref="PtxasLocations"/>)
/// for sm_80 and sm_90 (modules that target sm_90a, the Hopper kernels, for sm_90a only; modules that target sm_90,
/// the programmatic-launch specialisations, for sm_90 only): no errors, no spills, no
/// local memory. Inconclusive when no ptxas is found.
/// </summary>
[TestClass]
public sealed partial class PtxasTests
{
    public static IEnumerable<object[]> ModulesAndArchs() =>
        PtxCatalog.All().SelectMany(m => Archs(m.Ptx).Select(a => new object[] { m.ModuleName, a }));

    // sm_90a modules (the Hopper kernels) for sm_90a only; sm_90 modules (griddepcontrol) for sm_90; the rest for both.
    private static string[] Archs(string ptx) =>
        ptx.Contains("\n.target sm_90a", StringComparison.Ordinal) ? ["sm_90a"]
        : ptx.Contains("\n.target sm_90\n", StringComparison.Ordinal) ? ["sm_90"]
        : ["sm_80", "sm_90"];

    [TestMethod]
    [DynamicData(nameof(ModulesAndArchs))]
    public void Specialisation_AssemblesWithoutSpills(string moduleName, string arch)
    {
        string ptxas = FindPtxas() ?? AssertInconclusive("ptxas not found (set PTXAS or put ptxas on PATH)");
        PtxModuleSpec module = PtxCatalog.All().Single(m => m.ModuleName == moduleName);
        string file = Path.Combine(Path.GetTempPath(), $"moenative-ptxas-{Guid.NewGuid():N}.ptx");
        File.WriteAllText(file, module.Ptx);
        try
        {
            var psi = new ProcessStartInfo(ptxas) { RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (string a in new[] { $"-arch={arch}", "-v", file, "-o", "/dev/null" }) psi.ArgumentList.Add(a);
            using Process p = Process.Start(psi)!;
            string stdout = p.StandardOutput.ReadToEnd();
            string log = stdout + p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.AreEqual(0, p.ExitCode, $"ptxas failed for {moduleName} ({arch}):\n{log}");
            MatchCollection spills = SpillLine().Matches(log);
            Assert.AreEqual(module.Kernels.Count, spills.Count, $"one spill line per entry expected:\n{log}");
            foreach (Match m in spills)
                Assert.IsTrue(m.Groups[1].Value == "0" && m.Groups[2].Value == "0" && m.Groups[3].Value == "0",
                    $"{moduleName} ({arch}) spills or uses a stack frame:\n{log}");
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static string AssertInconclusive(string reason)
    {
        Assert.Inconclusive(reason);
        return "";
    }

    internal static string? FindPtxas()
    {
        string? env = Environment.GetEnvironmentVariable("PTXAS");
        if (!string.IsNullOrWhiteSpace(env) && File.Exists(env)) return env;
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, "ptxas");
            if (File.Exists(candidate)) return candidate;
        }
        return PtxasLocations.FirstOrDefault(File.Exists);
    }

    /// <summary>Where ptxas is looked for after PTXAS and PATH (the same order as tools/ptx/check.sh).</summary>
    internal static readonly string[] PtxasLocations = ["/usr/local/cuda/bin/ptxas", "/opt/cuda124/usr/bin/ptxas"];

    [GeneratedRegex(@"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")]
    private static partial Regex SpillLine();
}
