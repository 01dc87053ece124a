using System.Diagnostics;

namespace MoeNative.Tests.Tools;

/// <summary><c>tools/ptx/check.sh</c> without a ptxas: exit 2 with one clear line before any dump, and no temp
/// files left (the script's TMPDIR is a private empty folder checked afterwards).</summary>
[TestClass]
public sealed class PtxCheckScriptTests
{
    [TestMethod]
    [DataRow(null, "no ptxas found", DisplayName = "no ptxas anywhere")]
    [DataRow("/nonexistent/ptxas", "PTXAS=/nonexistent/ptxas is not executable", DisplayName = "PTXAS not executable")]
    public void WithoutPtxas_StopsWithOneLine_LeavesNoTempFiles(string? ptxasVariable, string expected)
    {
        string script = RepositoryFiles.Path("tools/ptx/check.sh");
        DirectoryInfo tmp = Directory.CreateTempSubdirectory("moenative-check-sh-");
        try
        {
            var start = new ProcessStartInfo("bash", [script])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            start.Environment["TMPDIR"] = tmp.FullName;
            start.Environment["PATH"] = "/usr/bin:/bin"; // no ptxas, no moenative, no dotnet
            start.Environment.Remove("PTXAS");
            start.Environment["PTXAS_SEARCH"] = ""; // not the machine's /usr/local/cuda or /opt/cuda124 either
            if (ptxasVariable is not null) start.Environment["PTXAS"] = ptxasVariable;
            start.Environment["MOENATIVE_CLI"] = "false"; // if the script ever got as far as dumping, the dump fails loudly
            using Process process = Process.Start(start)!;
            string stdout = process.StandardOutput.ReadToEnd();
            string stderr = process.StandardError.ReadToEnd();
            Assert.IsTrue(process.WaitForExit(30_000), "check.sh did not stop within 30 s");
            string all = $"exit {process.ExitCode}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}";

            Assert.AreEqual(2, process.ExitCode, all);
            Assert.AreEqual("", stdout, "nothing on stdout (no dump, no table): " + all);
            string[] errorLines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.HasCount(1, errorLines, all);
            StringAssert.StartsWith(errorLines[0], "check.sh: " + expected, all);
            Assert.IsEmpty(tmp.GetFileSystemInfos(), "temp files left: " + string.Join(", ", tmp.GetFileSystemInfos().Select(f => f.Name)));
        }
        finally
        {
            tmp.Delete(recursive: true);
        }
    }
}
