using System.Reflection;
using MoeNative.Blocks;
using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;
using MoeNative.Reference.IO;

namespace MoeNative.Tests.Docs;

/// <summary>The public surface is what users call: every exported type of the four library assemblies is listed in
/// <c>Tests/Docs/PublicTypes.txt</c> (a type made public or internal shows up here as a diff to review); the kernels'
/// machinery is internal; <see cref="ScalarType"/> lives with <see cref="BFloat16"/> and the CUDA objects.</summary>
[TestClass]
public sealed class PublicSurfaceTests
{
    private static readonly Assembly[] s_libraries =
        [typeof(CudaContext).Assembly, typeof(GroupedGemm).Assembly, typeof(MoeConfig).Assembly, typeof(Qwen3MoeFusedBlock).Assembly];

    private static string[] Exported() => s_libraries
        .SelectMany(a => a.GetExportedTypes().Select(t => $"{a.GetName().Name}: {t.FullName}"))
        .Order(StringComparer.Ordinal).ToArray();

    [TestMethod]
    public void ExportedTypes_AreTheListedOnes()
    {
        string path = RepositoryFiles.Path("Tests/Docs/PublicTypes.txt");
        string[] expected = File.ReadAllLines(path).Where(l => l.Length > 0 && !l.StartsWith('#')).ToArray();
        string[] actual = Exported();

        string[] added = actual.Except(expected).ToArray(), removed = expected.Except(actual).ToArray();
        Assert.IsTrue(added.Length == 0 && removed.Length == 0,
            $"public types differ from {path} (update the file if intended):\n+ {string.Join("\n+ ", added)}\n- {string.Join("\n- ", removed)}");
    }

    [TestMethod]
    [DataRow(typeof(PtxTemplate))]
    [DataRow(typeof(PtxSignature))]
    [DataRow(typeof(PtxModuleCache))]
    [DataRow(typeof(PtxCatalog))]
    [DataRow(typeof(MoeKernels))]
    [DataRow(typeof(GroupedGemmSpecs))]
    [DataRow(typeof(BlockWorkspaceLayout))]
    [DataRow(typeof(MoeLayerRunner))]
    public void KernelMachinery_IsInternal(Type type) => Assert.IsFalse(type.IsPublic, type.FullName);

    [TestMethod]
    public void ScalarType_LivesWithBFloat16AndTheCudaObjects()
    {
        Assert.AreEqual("MoeNative.Interop", typeof(ScalarType).Namespace);
        Assert.AreEqual(typeof(CudaContext).Namespace, typeof(BFloat16).Namespace);
        Assert.AreEqual(typeof(CudaContext).Namespace, typeof(ScalarTypes).Namespace);
    }

    [TestMethod]
    public void Vocabulary_IsHuggingFaces()
    {
        string[] weights = typeof(MoeWeights).GetProperties().Select(p => p.Name).ToArray();
        string[] grads = typeof(MoeGradients).GetProperties().Select(p => p.Name).ToArray();
        string[] device = typeof(DeviceGradients<float>).GetProperties().Select(p => p.Name).ToArray();

        foreach (string name in new[] { "Gate", "GateUpProj", "DownProj" }) CollectionAssert.Contains(weights, name, "MoeWeights." + name);
        foreach (string name in new[] { "HiddenStates", "Gate", "GateUpProj", "GateProj", "UpProj", "DownProj" }) CollectionAssert.Contains(grads, name, "MoeGradients." + name);
        foreach (string name in new[] { "HiddenStates", "Gate", "GateUpProj", "DownProj" }) CollectionAssert.Contains(device, name, "DeviceGradients." + name);
        foreach (string old in new[] { "Router", "Down", "GateUp", "X" })
        {
            CollectionAssert.DoesNotContain(weights, old);
            CollectionAssert.DoesNotContain(grads, old);
            CollectionAssert.DoesNotContain(device, old);
        }
    }
}
