using System.Globalization;
using System.Text.RegularExpressions;
using MoeNative.Interop;

namespace MoeNative.Reference.IO;

/// <summary>Which of the three layer parameters a checkpoint tensor fills.</summary>
public enum MoeWeightPart
{
    /// <summary><c>gate.weight</c> [E,H].</summary>
    Router,
    /// <summary><c>experts.gate_up_proj</c> [E,2I,H] (per-expert gate_proj/up_proj fill rows of it).</summary>
    GateUp,
    /// <summary><c>experts.down_proj</c> [E,H,I].</summary>
    Down,
}

/// <summary>
/// One checkpoint tensor and where its elements go: <see cref="ElementCount"/> elements of <see cref="Part"/> starting
/// at element <see cref="ElementOffset"/> (64-bit), read from <see cref="File"/> in its dtype <see cref="FileDType"/>.
/// </summary>
public sealed record MoeTensorPlacement(string Name, SafetensorsFile File, SafetensorsTensorInfo Info, ScalarType FileDType,
    MoeWeightPart Part, long ElementOffset)
{
    public long ElementCount => Info.ElementCount;
    public long ByteLength => Info.End - Info.Begin;
    public SafetensorsTensorView View() => File.View(Name);
}

/// <summary>
/// Hugging Face names of one MoE layer resolved to placements, every tensor checked (present, shape, floating dtype)
/// before any byte is read: the fused layout (<c>experts.gate_up_proj</c> [E,2I,H], <c>experts.down_proj</c> [E,H,I]) or
/// the per-expert layout (<c>experts.{e}.gate_proj.weight</c> [I,H] → GateUp rows e·2I.., <c>up_proj</c> → rows e·2I+I..,
/// <c>down_proj</c> [H,I] → Down[e]), plus <c>gate.weight</c> [E,H]. Shared by the host loader and the device loader.
/// </summary>
public static partial class MoeCheckpointLayout
{
    [GeneratedRegex(@"^model\.layers\.(\d+)\.mlp\.gate\.weight$")]
    private static partial Regex RouterName();

    /// <summary>The decoder layers that have an MoE router (<c>model.layers.L.mlp.gate.weight</c>), ascending.</summary>
    public static IReadOnlyList<int> MoeLayers(SafetensorsCollection files)
    {
        ArgumentNullException.ThrowIfNull(files);
        var layers = new List<int>();
        foreach (string name in files.Names)
        {
            Match m = RouterName().Match(name);
            if (m.Success && int.TryParse(m.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out int layer)) layers.Add(layer);
        }
        layers.Sort();
        return layers;
    }

    /// <summary>Every tensor of layer <paramref name="layer"/> (null: bare names) with its destination.</summary>
    /// <exception cref="SafetensorsFormatException">A missing tensor, wrong shape or non-floating dtype; the message names
    /// the tensor and the expected shape.</exception>
    public static IReadOnlyList<MoeTensorPlacement> Resolve(MoeConfig config, SafetensorsCollection files, int? layer)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(files);
        config.Validate();
        string prefix = MoeCheckpoint.Prefix(layer);
        long e = config.NumExperts, h = config.HiddenSize, i = config.IntermediateSize;
        string fusedGateUp = prefix + "experts.gate_up_proj", fusedDown = prefix + "experts.down_proj";
        string perExpert0 = prefix + "experts.0.gate_proj.weight";
        var list = new List<MoeTensorPlacement> { Place(files, prefix + "gate.weight", [e, h], "[E,H]", MoeWeightPart.Router, 0) };
        if (files.Contains(fusedGateUp) || files.Contains(fusedDown))
        {
            list.Add(Place(files, fusedGateUp, [e, 2 * i, h], "[E,2I,H]", MoeWeightPart.GateUp, 0));
            list.Add(Place(files, fusedDown, [e, h, i], "[E,H,I]", MoeWeightPart.Down, 0));
        }
        else if (files.Contains(perExpert0))
        {
            for (long x = 0; x < e; x++)
            {
                list.Add(Place(files, $"{prefix}experts.{x}.gate_proj.weight", [i, h], "[I,H]", MoeWeightPart.GateUp, x * 2 * i * h));
                list.Add(Place(files, $"{prefix}experts.{x}.up_proj.weight", [i, h], "[I,H]", MoeWeightPart.GateUp, (x * 2 + 1) * i * h));
                list.Add(Place(files, $"{prefix}experts.{x}.down_proj.weight", [h, i], "[H,I]", MoeWeightPart.Down, x * h * i));
            }
        }
        else
        {
            throw new SafetensorsFormatException(
                $"'{files.Source}': expert weights not found: expected '{fusedGateUp}' [E,2I,H]=[{e},{2 * i},{h}] and '{fusedDown}' [E,H,I]=[{e},{h},{i}], "
                + $"or per-expert '{perExpert0}' [I,H]=[{i},{h}] etc.{LayerHint(files, layer)}");
        }
        return list;
    }

    /// <summary>Elements of <paramref name="part"/> in a layer of <paramref name="config"/>.</summary>
    public static long Elements(MoeConfig config, MoeWeightPart part) => part switch
    {
        MoeWeightPart.Router => config.GateElements,
        MoeWeightPart.GateUp => config.GateUpProjElements,
        MoeWeightPart.Down => config.DownProjElements,
        _ => throw new ArgumentOutOfRangeException(nameof(part), part, null),
    };

    private static MoeTensorPlacement Place(SafetensorsCollection files, string name, long[] shape, string symbolic, MoeWeightPart part, long offset)
    {
        string expected = $"{symbolic}=[{string.Join(",", shape)}]";
        if (!files.Contains(name))
            throw new SafetensorsFormatException($"'{files.Source}': missing tensor '{name}' (expected shape {expected}).");
        (SafetensorsFile file, SafetensorsTensorInfo info) = files.Find(name);
        if (!info.Shape.AsSpan().SequenceEqual(shape))
            throw new SafetensorsFormatException($"{file.Path}: tensor '{name}' has shape {info.ShapeText}, expected {expected} for this config.");
        if (info.DType?.ToScalarType() is not { } dtype)
            throw new SafetensorsFormatException($"{file.Path}: tensor '{name}' has dtype {info.DTypeName}; weights must be F32, F16 or BF16.");
        return new MoeTensorPlacement(name, file, info, dtype, part, offset);
    }

    private static string LayerHint(SafetensorsCollection files, int? layer)
    {
        string? sample = files.Names.FirstOrDefault(n => n.Contains("mlp.", StringComparison.Ordinal) && n.Contains("experts", StringComparison.Ordinal));
        if (sample is null) return $" The file has tensors {SafetensorsWriter.Describe(files.Names)}.";
        return layer is null
            ? $" Names like '{sample}' are present: pass a layer index (--layer L) to select 'model.layers.L.mlp.'."
            : $" Names like '{sample}' are present: check the layer index.";
    }
}
