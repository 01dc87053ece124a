using System.Reflection;

namespace MoeNative.Ptx;

/// <summary>
/// Reads the hand-written PTX files embedded in this assembly (every <c>.ptx</c> under <c>Ptx/</c>, beside its
/// family's launcher). A file <c>Ptx/Routing/router_softmax_topk.ptx</c> is addressed by its path relative to
/// <c>Ptx/</c>: <c>"Routing/router_softmax_topk.ptx"</c> (either slash works).
/// </summary>
internal static class PtxLibrary
{
    private const string ResourcePrefix = "MoeNative.Ptx.";
    private static readonly Assembly Owner = typeof(PtxLibrary).Assembly;

    /// <summary>Every embedded PTX file, as a relative path with '/' separators, sorted.</summary>
    public static IReadOnlyList<string> EmbeddedPaths { get; } = Owner.GetManifestResourceNames()
        .Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal) && n.EndsWith(".ptx", StringComparison.Ordinal))
        .Select(n => n[ResourcePrefix.Length..].Replace('\\', '/'))
        .Order(StringComparer.Ordinal)
        .ToArray();

    /// <summary>True for a fragment (a file under a <c>fragments/</c> folder): included by modules, never loaded itself.</summary>
    public static bool IsFragment(string relativePath)
    {
        ArgumentNullException.ThrowIfNull(relativePath);
        return relativePath.Replace('\\', '/').Contains("/fragments/", StringComparison.Ordinal);
    }

    /// <summary>The text of an embedded PTX file with its <c>#include</c> lines composed (<see cref="PtxTemplate.Compose"/>),
    /// ready for <see cref="PtxTemplate.Specialise"/>.</summary>
    /// <exception cref="FileNotFoundException">No embedded resource matches <paramref name="relativePath"/>.</exception>
    /// <exception cref="PtxTemplateException">An include cannot be composed (names the file and line).</exception>
    public static string ReadComposed(string relativePath) => PtxTemplate.Compose(ReadEmbedded(relativePath), relativePath, ReadEmbedded);

    /// <summary>Returns the text of an embedded PTX file (as written: <c>#include</c> lines not composed).</summary>
    /// <exception cref="FileNotFoundException">No embedded resource matches; the message lists the ones that exist.</exception>
    public static string ReadEmbedded(string relativePath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(relativePath);
        string wanted = relativePath.Replace('\\', '/').TrimStart('/');
        // NOTE: MSBuild's %(RecursiveDir) keeps the OS separator in the logical name, older layouts use '.'; accept both.
        string? resource = Owner.GetManifestResourceNames().FirstOrDefault(n =>
            n.StartsWith(ResourcePrefix, StringComparison.Ordinal) &&
            (string.Equals(n[ResourcePrefix.Length..].Replace('\\', '/'), wanted, StringComparison.Ordinal) ||
             string.Equals(n[ResourcePrefix.Length..], wanted.Replace('/', '.'), StringComparison.Ordinal)));
        if (resource is null)
            throw new FileNotFoundException(
                $"No embedded PTX file '{relativePath}' in {Owner.GetName().Name}. Embedded: {string.Join(", ", EmbeddedPaths)}.");
        using Stream stream = Owner.GetManifestResourceStream(resource)!;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
