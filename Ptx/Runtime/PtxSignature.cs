using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using MoeNative.Interop;

namespace MoeNative.Ptx;

/// <summary>One kernel parameter: PTX type (<c>.u64</c>, <c>.s64</c>, <c>.s32</c>, <c>.u32</c>, <c>.f32</c>, or a byte
/// array written with its alignment, <c>.align 64 .b8[128]</c> for a <see cref="CudaTensorMap"/>) and name.</summary>
internal readonly record struct PtxParam(string Type, string Name)
{
    public override string ToString() => $".param {Type} {Name}";
}

/// <summary>
/// The parameter list of one <c>.entry</c>, parsed from PTX text or derived from a C# launch-args struct, so the
/// two can be compared (a CPU test does it for every kernel specialisation in <see cref="PtxCatalog"/>).
/// Args structs are <c>[StructLayout(LayoutKind.Sequential)]</c>, one field per parameter, in order:
/// ulong = .u64 (pointers), long = .s64, int = .s32, uint = .u32, float = .f32.
/// </summary>
internal sealed partial class PtxSignature(string entryName, IReadOnlyList<PtxParam> parameters)
{
    public string EntryName { get; } = entryName;

    public IReadOnlyList<PtxParam> Parameters { get; } = parameters;

    // .visible .entry name( .param .u64 a, .param .u32 b ) — also `.entry name ()` and .align qualifiers.
    [GeneratedRegex(@"\.entry\s+([A-Za-z_$%][A-Za-z0-9_$%]*)\s*\(([^)]*)\)", RegexOptions.Singleline)]
    private static partial Regex EntryRegex();

    // .param [.align N] .type name[count]?  (scalars keep the bare type; arrays become ".align N .b8[count]")
    [GeneratedRegex(@"^\.param\s+(?:\.align\s+(\d+)\s+)?(\.[a-z0-9]+)\s+([A-Za-z_$%][A-Za-z0-9_$%]*)\s*(?:\[\s*(\d+)\s*\])?$")]
    private static partial Regex ParamRegex();

    [GeneratedRegex(@"//[^\n]*|/\*.*?\*/", RegexOptions.Singleline)]
    private static partial Regex CommentRegex();

    /// <summary>Every <c>.entry</c> in <paramref name="ptxText"/>, in file order.</summary>
    /// <exception cref="FormatException">A parameter declaration could not be parsed.</exception>
    public static IReadOnlyList<PtxSignature> ParseAll(string ptxText)
    {
        ArgumentNullException.ThrowIfNull(ptxText);
        string text = CommentRegex().Replace(ptxText, " ");
        var result = new List<PtxSignature>();
        foreach (Match m in EntryRegex().Matches(text))
        {
            string name = m.Groups[1].Value;
            var ps = new List<PtxParam>();
            foreach (string raw in m.Groups[2].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                string decl = Regex.Replace(raw, @"\s+", " ");
                Match pm = ParamRegex().Match(decl);
                if (!pm.Success) throw new FormatException($"Entry '{name}': cannot parse parameter '{decl}'.");
                string type = pm.Groups[4].Success
                    ? $".align {(pm.Groups[1].Success ? pm.Groups[1].Value : "1")} {pm.Groups[2].Value}[{pm.Groups[4].Value}]"
                    : pm.Groups[2].Value;
                ps.Add(new PtxParam(type, pm.Groups[3].Value));
            }
            result.Add(new PtxSignature(name, ps));
        }
        return result;
    }

    /// <summary>The signature of <paramref name="entryName"/> in <paramref name="ptxText"/>.</summary>
    /// <exception cref="KeyNotFoundException">No such entry; the message lists the entries present.</exception>
    public static PtxSignature Parse(string ptxText, string entryName)
    {
        IReadOnlyList<PtxSignature> all = ParseAll(ptxText);
        return all.FirstOrDefault(s => s.EntryName == entryName)
            ?? throw new KeyNotFoundException(
                $"No .entry '{entryName}' in the PTX text; entries: {string.Join(", ", all.Select(s => s.EntryName))}.");
    }

    /// <summary>The signature a launch with <typeparamref name="TArgs"/> passes (entry name = the struct's name).</summary>
    public static PtxSignature FromArgs<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicFields | DynamicallyAccessedMemberTypes.NonPublicFields)] TArgs>()
        where TArgs : unmanaged => FromArgs(typeof(TArgs));

    /// <summary>Non-generic form of <see cref="FromArgs{TArgs}"/>.</summary>
    /// <exception cref="ArgumentException">The struct is not sequential/unmanaged or has a field of an unsupported type.</exception>
    public static PtxSignature FromArgs([DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicFields | DynamicallyAccessedMemberTypes.NonPublicFields)] Type argsType)
    {
        ArgumentNullException.ThrowIfNull(argsType);
        if (!argsType.IsValueType || !argsType.IsLayoutSequential)
            throw new ArgumentException($"{argsType.Name} must be a struct with [StructLayout(LayoutKind.Sequential)].", nameof(argsType));
        // NOTE: GetFields returns declaration order for sequential structs, which is the marshalled/packed order.
        FieldInfo[] fields = ParameterFields(argsType);
        var ps = new PtxParam[fields.Length];
        for (int i = 0; i < fields.Length; i++)
        {
            Type t = fields[i].FieldType;
            string ptx = t == typeof(ulong) ? ".u64"
                : t == typeof(long) ? ".s64"
                : t == typeof(int) ? ".s32"
                : t == typeof(uint) ? ".u32"
                : t == typeof(float) ? ".f32"
                : t == typeof(CudaTensorMap) ? TensorMapParam(argsType, fields[i])
                : throw new ArgumentException($"{argsType.Name}.{fields[i].Name}: type {t.Name} has no PTX parameter mapping.", nameof(argsType));
            ps[i] = new PtxParam(ptx, fields[i].Name);
        }
        return new PtxSignature(argsType.Name, ps);
    }

    /// <summary>The fields of <paramref name="argsType"/> that are kernel parameters, by offset (a
    /// <see cref="CudaParamGap48"/> is padding, not a parameter).</summary>
    public static FieldInfo[] ParameterFields([DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicFields | DynamicallyAccessedMemberTypes.NonPublicFields)] Type argsType) =>
        argsType.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)
            .Where(f => f.FieldType != typeof(CudaParamGap48))
            .OrderBy(f => Marshal.OffsetOf(argsType, f.Name).ToInt64()).ToArray();

    /// <summary>The PTX type of a <see cref="CudaTensorMap"/> field: <c>.align 64 .b8[128]</c>; its offset in the args
    /// struct plus the sm_90 parameter base 0x210 must be a multiple of 64 (see CudaTensorMap's NOTE).</summary>
    public static string TensorMapType => $".align {CudaTensorMap.Alignment} .b8[{CudaTensorMap.SizeInBytes}]";

    private static string TensorMapParam(Type argsType, FieldInfo field)
    {
        long offset = Marshal.OffsetOf(argsType, field.Name).ToInt64();
        if (!CudaTensorMap.IsParamOffsetAligned(offset))
            throw new ArgumentException(
                $"{argsType.Name}.{field.Name}: a CudaTensorMap must sit where offset + 0x{CudaTensorMap.KernelParamBase:x} is a multiple of {CudaTensorMap.Alignment} (e.g. 48, after a CudaParamGap48); it is at {offset}.", nameof(argsType));
        return TensorMapType;
    }

    /// <summary>True when both lists have the same PTX types in the same order (names are not compared).</summary>
    public bool TypesMatch(PtxSignature other) =>
        Parameters.Count == other.Parameters.Count && Parameters.Zip(other.Parameters).All(p => p.First.Type == p.Second.Type);

    /// <summary>Human-readable difference ("" when the types match), for test messages.</summary>
    public string DescribeMismatch(PtxSignature other)
    {
        if (TypesMatch(other)) return "";
        int n = Math.Max(Parameters.Count, other.Parameters.Count);
        var lines = new List<string> { $"{EntryName} vs {other.EntryName}: {Parameters.Count} vs {other.Parameters.Count} parameters" };
        for (int i = 0; i < n; i++)
        {
            string a = i < Parameters.Count ? Parameters[i].ToString() : "(none)";
            string b = i < other.Parameters.Count ? other.Parameters[i].ToString() : "(none)";
            lines.Add($"  [{i}] {a,-32} {b}{(i < Parameters.Count && i < other.Parameters.Count && Parameters[i].Type == other.Parameters[i].Type ? "" : "   <-- differs")}");
        }
        return string.Join('\n', lines);
    }

    public override string ToString() => $"{EntryName}({string.Join(", ", Parameters)})";
}
