using MoeNative.Interop;
using MoeNative.Reference;
using MoeNative.Reference.IO;
using MoeNative.Tests.Cli;

namespace MoeNative.Tests.Reference;

/// <summary>The host-memory estimate's weight term, and the header check that decides it for a checkpoint.</summary>
[TestClass]
public sealed class MemoryEstimateTests
{
    private static readonly MoeConfig Small = new(HiddenSize: 64, IntermediateSize: 32, NumExperts: 4, TopK: 2) { Name = "small" };

    [TestMethod]
    public void HostBytes_OneWeightCopyLessThanTwo_ByTheWeightBytes()
    {
        // Hand-computed: E*H + 3*E*I*H = 4*64 + 3*4*32*64 = 24832 floats = 99328 bytes.
        double two = MoeMemoryEstimate.HostBytes(Small, 16, backward: true, written: true, weightCopies: 2);
        double one = MoeMemoryEstimate.HostBytes(Small, 16, backward: true, written: true, weightCopies: 1);
        Assert.AreEqual(99328.0, two - one);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => MoeMemoryEstimate.HostBytes(Small, 16, false, weightCopies: 0));
    }

    [TestMethod]
    [DataRow(SafetensorsDType.BF16, ScalarType.BFloat16, true)]
    [DataRow(SafetensorsDType.BF16, ScalarType.Float32, true)]
    [DataRow(SafetensorsDType.BF16, ScalarType.Float16, false)]
    [DataRow(SafetensorsDType.F32, ScalarType.BFloat16, false)]
    [DataRow(SafetensorsDType.F16, ScalarType.Float16, true)]
    public void StoredExactlyIn_ReadsTheCheckpointsDType(SafetensorsDType stored, ScalarType run, bool exact)
    {
        using var folder = new TempFolder("stored-exactly");
        SyntheticCheckpoint.Write(folder.Path("ckpt"), Small, 1, stored, CheckpointLayout.PerExpert, 11);
        Assert.AreEqual(exact, MoeCheckpoint.StoredExactlyIn(Small, folder.Path("ckpt"), 0, run));
    }
}
