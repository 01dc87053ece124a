using System.CommandLine;
using MoeNative.Ptx;
using Spectre.Console;

namespace MoeNative.Cli.Commands;

/// <summary><c>ptx dump --out DIR</c>: writes every specialised PTX module of <see cref="PtxCatalog"/> as
/// <c>DIR/&lt;module name&gt;.ptx</c>, so tools/ptx/check.sh can run <c>ptxas -v</c> over each one.</summary>
public static class PtxCommand
{
    public static Command Create(CliConsole console)
    {
        var ptx = new Command("ptx", "PTX tooling: dump the specialised kernels the library JIT-compiles.");

        var outOption = CliOptions.Output<DirectoryInfo>(
            "Folder to write <module>.ptx files into (created if missing; existing .ptx files there are replaced).", "DIR", required: true);
        var filterOption = new Option<string?>("--filter")
        {
            HelpName = "TEXT",
            Description = "Only modules whose name contains this text (ordinal, case-insensitive).",
        };
        var dump = new Command("dump", "Write every (module name, specialised PTX) of the PTX catalog to a folder.")
        {
            outOption,
            filterOption,
        };
        dump.SetAction(parse => CliApp.Guard(console, () =>
            Dump(console, parse.GetRequiredValue(outOption), parse.GetValue(filterOption))));
        ptx.Subcommands.Add(dump);
        return ptx;
    }

    public static int Dump(CliConsole console, DirectoryInfo outDir, string? filter)
    {
        IReadOnlyList<PtxModuleSpec> modules = PtxCatalog.All()
            .Where(m => filter is null || m.ModuleName.Contains(filter, StringComparison.OrdinalIgnoreCase))
            .ToArray();
        if (modules.Count == 0)
        {
            throw new CliUsageException(filter is null
                ? "the PTX catalog is empty"
                : $"no PTX module name contains '{filter}'");
        }

        Directory.CreateDirectory(outDir.FullName);
        var table = new Table().Border(TableBorder.Simple)
            .AddColumn("module").AddColumn("entries").AddColumn(new TableColumn("bytes").RightAligned());
        foreach (PtxModuleSpec module in modules)
        {
            string path = Path.Combine(outDir.FullName, FileName(module.ModuleName));
            string temp = path + ".tmp";
            File.WriteAllText(temp, module.Ptx);
            File.Move(temp, path, overwrite: true);
            table.AddRow(
                Markup.Escape(module.ModuleName),
                Markup.Escape(string.Join(", ", module.Kernels.Select(k => k.EntryName))),
                module.Ptx.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        console.Ansi.Write(table);
        console.Out.WriteLine($"wrote {modules.Count} PTX modules ({modules.Sum(m => m.Kernels.Count)} entries) to {outDir.FullName}");
        return CliApp.ExitOk;
    }

    /// <summary>The module name as a file name: characters outside [A-Za-z0-9._-] become '_'.</summary>
    internal static string FileName(string moduleName)
    {
        var chars = moduleName.Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' ? c : '_').ToArray();
        string name = new(chars);
        return name.EndsWith(".ptx", StringComparison.Ordinal) ? name : name + ".ptx";
    }
}
