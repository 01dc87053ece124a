using MoeNative.Reference;
using MoeNative.Interop;

namespace MoeNative.Tests.Reference;

/// <summary>A reference is chosen by <see cref="MoeReferenceKind"/>; the CLI's names map onto it.</summary>
[TestClass]
public sealed class ReferenceKindTests
{
    [TestMethod]
    [DataRow("hf", MoeReferenceKind.Hf)]
    [DataRow(" Grouped ", MoeReferenceKind.Grouped)]
    public void ParseKind_CliNames(string name, MoeReferenceKind expected) => Assert.AreEqual(expected, MoeReference.ParseKind(name));

    [TestMethod]
    public void ParseKind_UnknownName_NamesIt()
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => MoeReference.ParseKind("fused"));
        StringAssert.Contains(e.Message, "'fused'");
    }

    [TestMethod]
    public void Create_ByKind_GivesThatFormulation()
    {
        MoeWeights w = MoeWeights.Random(MoeConfig.Preset("tiny"), 1);

        Assert.IsInstanceOfType<HfMoeReference>(MoeReference.Create(MoeReferenceKind.Hf, w, ScalarType.Float32));
        Assert.IsInstanceOfType<GroupedMoeReference>(MoeReference.Create(MoeReferenceKind.Grouped, w, ScalarType.Float32));
        Assert.Throws<ArgumentOutOfRangeException>(() => MoeReference.Create((MoeReferenceKind)7, w, ScalarType.Float32));
    }
}
