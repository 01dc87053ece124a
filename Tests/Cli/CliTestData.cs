using MoeNative.Reference;
using MoeNative.Reference.IO;

namespace MoeNative.Tests.Cli;

/// <summary>Tiny checkpoints and activation files written through Reference's safetensors writer.</summary>
internal static class CliTestData
{
    /// <summary>Writes the layer's weights under Hugging Face names: fused (<c>experts.gate_up_proj</c>,
    /// <c>experts.down_proj</c>) or per-expert (<c>experts.{e}.gate_proj.weight</c>, ...), prefixed
    /// <c>model.layers.{L}.mlp.</c> when <paramref name="layer"/> is set.</summary>
    public static void WriteWeights(string path, MoeWeights w, SafetensorsDType fileDType, bool perExpert, int? layer)
    {
        MoeConfig c = w.Config;
        long e = c.NumExperts, h = c.HiddenSize, i = c.IntermediateSize;
        string prefix = MoeCheckpoint.Prefix(layer);
        var entries = new List<SafetensorsEntry> { SafetensorsEntry.FromFloats(prefix + "gate.weight", [e, h], w.Gate, fileDType) };
        if (perExpert)
        {
            for (int x = 0; x < e; x++)
            {
                entries.Add(SafetensorsEntry.FromFloats($"{prefix}experts.{x}.gate_proj.weight", [i, h], w.GateProjOf(x), fileDType));
                entries.Add(SafetensorsEntry.FromFloats($"{prefix}experts.{x}.up_proj.weight", [i, h], w.UpProjOf(x), fileDType));
                entries.Add(SafetensorsEntry.FromFloats($"{prefix}experts.{x}.down_proj.weight", [h, i], w.DownProjOf(x), fileDType));
            }
        }
        else
        {
            entries.Add(SafetensorsEntry.FromFloats(prefix + "experts.gate_up_proj", [e, 2 * i, h], w.GateUpProj, fileDType));
            entries.Add(SafetensorsEntry.FromFloats(prefix + "experts.down_proj", [e, h, i], w.DownProj, fileDType));
        }
        SafetensorsWriter.Write(path, entries);
    }

    public static void WriteTensor(string path, string name, long[] shape, float[] values, SafetensorsDType dtype = SafetensorsDType.F32) =>
        SafetensorsWriter.Write(path, [SafetensorsEntry.FromFloats(name, shape, values, dtype)]);

    /// <summary>Every F32 tensor of a safetensors file, by name.</summary>
    public static Dictionary<string, (long[] Shape, float[] Values)> ReadAll(string path, out IReadOnlyDictionary<string, string> metadata)
    {
        using SafetensorsFile file = SafetensorsFile.Open(path);
        metadata = new Dictionary<string, string>(file.Metadata);
        var result = new Dictionary<string, (long[] Shape, float[] Values)>();
        foreach ((string name, SafetensorsTensorInfo info) in file.Tensors)
        {
            Assert.AreEqual("F32", info.DTypeName, $"{name} must be written as F32");
            result[name] = (info.Shape, file.ReadFloat32(name, info.Shape));
        }
        return result;
    }
}
