using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Blocks;

/// <summary>
/// What a stored kernel choice is valid for: the card, the driver, the grouped-GEMM kernel text (a hash over every
/// embedded grouped-GEMM PTX file and candidate list), the storage dtype and the block's dims. One file per context;
/// inside it one entry per (GEMM, shape class).
/// </summary>
/// <param name="Card">Device name, compute capability and SM count, e.g. "NVIDIA H100 80GB HBM3 sm_90 132 SMs".</param>
/// <param name="Driver">CUDA driver version (cuDriverGetVersion), e.g. "12040".</param>
/// <param name="KernelHash">See <see cref="TuningStore.KernelTextHash"/>.</param>
/// <param name="DType">Storage dtype.</param>
/// <param name="HiddenSize">H.</param>
/// <param name="IntermediateSize">I.</param>
/// <param name="NumExperts">E.</param>
/// <param name="TopK">k.</param>
public sealed record TuningContext(string Card, string Driver, string KernelHash, ScalarType DType,
    int HiddenSize, int IntermediateSize, int NumExperts, int TopK)
{
    /// <summary>The canonical text every field is hashed from (and compared against when a file is read).</summary>
    public string Canonical => string.Create(CultureInfo.InvariantCulture,
        $"card={Card}\ndriver={Driver}\nkernels={KernelHash}\ndtype={DType.ShortName()}\nH={HiddenSize} I={IntermediateSize} E={NumExperts} k={TopK}");

    /// <summary>The context of a block on <paramref name="context"/>'s device with <paramref name="config"/>'s dims.</summary>
    public static TuningContext For(CudaContext context, MoeConfig config, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(config);
        (int major, int minor) = context.ComputeCapability;
        return new TuningContext(
            string.Create(CultureInfo.InvariantCulture, $"{context.Name} sm_{major}{minor} {context.MultiprocessorCount} SMs"),
            context.DriverVersion.ToString(CultureInfo.InvariantCulture), TuningStore.KernelTextHash(dtype), dtype,
            config.HiddenSize, config.IntermediateSize, config.NumExperts, config.TopK);
    }

    /// <summary>First 16 hex digits of SHA-256 over <see cref="Canonical"/>: the file name.</summary>
    public string Id => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Canonical)))[..16];
}

/// <summary>One stored choice: the config autotune picked for a GEMM in a shape class, and its time then.</summary>
public sealed record TunedChoice(FusedGemm Gemm, int ShapeClassTokens, GemmConfig Config, double Milliseconds);

/// <summary>
/// Autotune choices on disk, so a new process does not time every candidate again: one JSON file per
/// <see cref="TuningContext"/> under <see cref="Directory"/> (default <see cref="DefaultDirectory"/>: the
/// <c>MOENATIVE_TUNING_DIR</c> environment variable, else <c>moenative/tuning</c> in the user's cache folder).
/// Writes are atomic (temp file beside the target, then rename) and merge with what another process stored
/// meanwhile. A file that cannot be read, is not JSON of this format, or was written for another context is ignored
/// with one warning (and replaced on the next save); an entry that is not a valid config is dropped with a warning.
/// </summary>
public sealed class TuningStore
{
    /// <summary>Environment variable naming the folder of the stored choices.</summary>
    public const string DirectoryVariable = "MOENATIVE_TUNING_DIR";

    /// <summary>Format of the files; a file of another version is stale (2: each entry names its kernel family).</summary>
    public const int FormatVersion = 2;

    private readonly Action<string> _warn;

    /// <param name="directory">Folder of the files (created on the first save).</param>
    /// <param name="warn">Receives each warning (one line); default: stderr, prefixed "moenative: warning: ".</param>
    public TuningStore(string directory, Action<string>? warn = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        Directory = Path.GetFullPath(directory);
        _warn = warn ?? (m => Console.Error.WriteLine("moenative: warning: " + m));
    }

    /// <summary>The store at <see cref="DefaultDirectory"/>.</summary>
    public static TuningStore Default(Action<string>? warn = null) => new(DefaultDirectory, warn);

    /// <summary><c>$MOENATIVE_TUNING_DIR</c> when set, else <c>&lt;cache&gt;/moenative/tuning</c> with cache =
    /// <c>$XDG_CACHE_HOME</c> or <c>~/.cache</c> (Linux, macOS) or the local application data folder (Windows).</summary>
    public static string DefaultDirectory
    {
        get
        {
            string? explicitDir = Environment.GetEnvironmentVariable(DirectoryVariable);
            if (!string.IsNullOrWhiteSpace(explicitDir)) return Path.GetFullPath(explicitDir);
            string cache = OperatingSystem.IsWindows()
                ? Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData)
                : Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
                    ? xdg
                    : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(cache, "moenative", "tuning");
        }
    }

    /// <summary>The folder of the files.</summary>
    public string Directory { get; }

    /// <summary>The file of <paramref name="context"/>: <c>&lt;dtype&gt;-&lt;id&gt;.json</c>.</summary>
    public string PathOf(TuningContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return Path.Combine(Directory, $"{context.DType.ShortName()}-{context.Id}.json");
    }

    /// <summary>The stored choices of <paramref name="context"/>; empty when there is no file, or it is corrupt or
    /// stale (then with a warning).</summary>
    public IReadOnlyList<TunedChoice> Load(TuningContext context)
    {
        string path = PathOf(context);
        if (!File.Exists(path)) return [];
        TuningFile? file;
        try
        {
            file = JsonSerializer.Deserialize(File.ReadAllText(path), TuningJson.Default.TuningFile);
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException or NotSupportedException)
        {
            _warn($"ignoring the stored kernel choices in {path}: unreadable ({OneLine(e.Message)}); they will be tuned again");
            return [];
        }
        if (file is null || file.Version != FormatVersion || file.Context != context.Canonical)
        {
            string why = file is null ? "empty"
                : file.Version != FormatVersion ? $"format version {file.Version}, expected {FormatVersion}"
                : "written for another card, driver, kernel text, dtype or dims";
            _warn($"ignoring the stored kernel choices in {path}: stale ({why}); they will be tuned again");
            return [];
        }
        var choices = new List<TunedChoice>();
        foreach (TuningEntry entry in file.Entries ?? [])
        {
            if (ToChoice(entry, context.DType) is { } choice)
                choices.Add(choice);
            else
                _warn($"ignoring a stored kernel choice in {path}: {entry.Gemm} T<={entry.ShapeClassTokens} {entry.Family} {entry.BlockM}x{entry.BlockN}x{entry.BlockK} s{entry.Stages} w{entry.Warps} is not a valid config");
        }
        return choices;
    }

    /// <summary>
    /// Stores <paramref name="choices"/> for <paramref name="context"/>, keeping the entries already on disk for other
    /// (GEMM, shape class) pairs (a new choice for the same pair replaces the old). Atomic: a reader sees the old file
    /// or the new one, never half of one.
    /// </summary>
    public void Save(TuningContext context, IEnumerable<TunedChoice> choices)
    {
        ArgumentNullException.ThrowIfNull(choices);
        var merged = new SortedDictionary<(FusedGemm, int), TunedChoice>();
        foreach (TunedChoice old in LoadQuietly(context)) merged[(old.Gemm, old.ShapeClassTokens)] = old;
        foreach (TunedChoice c in choices)
        {
            ArgumentNullException.ThrowIfNull(c);
            merged[(c.Gemm, c.ShapeClassTokens)] = c;
        }
        var file = new TuningFile
        {
            Version = FormatVersion,
            Context = context.Canonical,
            Entries = merged.Values.Select(c => new TuningEntry
            {
                Gemm = c.Gemm.ToString(),
                ShapeClassTokens = c.ShapeClassTokens,
                BlockM = c.Config.BlockM,
                BlockN = c.Config.BlockN,
                BlockK = c.Config.BlockK,
                Stages = c.Config.Stages,
                Warps = c.Config.Warps,
                Cluster = c.Config.Cluster,
                StagedEpilogue = c.Config.StagedEpilogue,
                Family = c.Config.Family.ToString(),
                Milliseconds = double.IsFinite(c.Milliseconds) ? c.Milliseconds : 0,
            }).ToList(),
        };
        PtxModuleCache.WriteAtomically(PathOf(context), JsonSerializer.Serialize(file, TuningJson.Default.TuningFile));
    }

    /// <summary><see cref="Save"/> of one choice that warns instead of throwing when the folder cannot be written (a
    /// read-only cache must not stop the block; the choice is then kept in memory only).</summary>
    public void TrySave(TuningContext context, TunedChoice choice)
    {
        try
        {
            Save(context, [choice]);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _warn($"could not store a kernel choice in {PathOf(context)}: {OneLine(e.Message)}");
        }
    }

    /// <summary>SHA-256 (hex, first 16 digits) over every embedded grouped-GEMM PTX file (path and text) and the
    /// candidate configs of each layout for <paramref name="dtype"/>: any kernel edit or new candidate makes the
    /// stored choices stale.</summary>
    public static string KernelTextHash(ScalarType dtype)
    {
        var material = new StringBuilder();
        foreach (string path in PtxLibrary.EmbeddedPaths.Where(p => p.StartsWith("GroupedGemm/", StringComparison.Ordinal)))
        {
            material.Append(path).Append('\0').Append(PtxLibrary.ReadEmbedded(path)).Append('\0');
        }
        foreach (GroupedGemmLayout layout in Enum.GetValues<GroupedGemmLayout>())
        {
            material.Append(layout).Append(':').AppendJoin(',', GroupedGemmSpecs.CandidateConfigs(layout, dtype)).Append('\0');
        }
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(material.ToString())))[..16];
    }

    private IReadOnlyList<TunedChoice> LoadQuietly(TuningContext context)
    {
        try
        {
            var file = JsonSerializer.Deserialize(File.ReadAllText(PathOf(context)), TuningJson.Default.TuningFile);
            if (file is null || file.Version != FormatVersion || file.Context != context.Canonical) return [];
            return (file.Entries ?? []).Select(e => ToChoice(e, context.DType)).OfType<TunedChoice>().ToArray();
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException or NotSupportedException)
        {
            return []; // Load already warned about this file, or it is gone; the save replaces it
        }
    }

    private static TunedChoice? ToChoice(TuningEntry e, ScalarType dtype)
    {
        if (!Enum.TryParse(e.Gemm, ignoreCase: false, out FusedGemm gemm) || !Enum.IsDefined(gemm) || e.ShapeClassTokens <= 0
            || !Enum.TryParse(e.Family, ignoreCase: false, out GemmMath family) || !Enum.IsDefined(family))
            return null;
        var config = new GemmConfig(e.BlockM, e.BlockN, e.BlockK, e.Stages, e.Warps, family, Math.Max(e.Cluster, 1), e.StagedEpilogue);
        return GroupedGemmSpecs.Problem(GemmTuner.LayoutOf(gemm), dtype, config) is null
            ? new TunedChoice(gemm, e.ShapeClassTokens, config, e.Milliseconds)
            : null;
    }

    private static string OneLine(string text) => text.ReplaceLineEndings(" ");
}

/// <summary>The file format (version 2).</summary>
internal sealed class TuningFile
{
    public int Version { get; set; }

    /// <summary><see cref="TuningContext.Canonical"/> of the context the file was written for.</summary>
    public string? Context { get; set; }

    public List<TuningEntry>? Entries { get; set; }
}

internal sealed class TuningEntry
{
    public string Gemm { get; set; } = "";
    public int ShapeClassTokens { get; set; }
    public int BlockM { get; set; }
    public int BlockN { get; set; }
    public int BlockK { get; set; }
    public int Stages { get; set; }
    public int Warps { get; set; }

    /// <summary>CTAs per cluster (1; 2 for the sm_90a W-multicast tiles); absent in older files = 1.</summary>
    public int Cluster { get; set; } = 1;

    /// <summary>The sm_90a row tile's staged epilogue (<see cref="GemmConfig.StagedEpilogue"/>); absent in older files = false.</summary>
    public bool StagedEpilogue { get; set; }

    /// <summary>The kernel family (<see cref="GemmMath"/> name: MmaSm80, WgmmaSm90a, Ffma).</summary>
    public string Family { get; set; } = "";
    public double Milliseconds { get; set; }
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(TuningFile))]
internal sealed partial class TuningJson : JsonSerializerContext;
