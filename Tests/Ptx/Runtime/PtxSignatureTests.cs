using System.Runtime.InteropServices;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Runtime;

[TestClass]
public sealed class PtxSignatureTests
{
    private const string Sample = """
        .version 7.8
        .target sm_80
        // .entry commented_out(.param .u64 nope)
        .visible .entry first_bf16(
            .param .u64 a_ptr,      // [T,H]
            .param .align 8 .s64 count,
            /* block comment */ .param .s32 n,
            .param .u32 flags,
            .param .f32 scale
        )
        .maxntid 128, 1, 1
        { ret; }
        .entry second() { ret; }
        """;

    [StructLayout(LayoutKind.Sequential)]
    private struct SampleArgs
    {
        public ulong A;
        public long Count;
        public int N;
        public uint Flags;
        public float Scale;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct WrongOrderArgs
    {
        public ulong A;
        public int N;
        public long Count;
        public uint Flags;
        public float Scale;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct DoubleArgs
    {
        public double Bad;
    }

    [TestMethod]
    public void ParseAll_FindsEntriesAndIgnoresComments()
    {
        var all = PtxSignature.ParseAll(Sample);
        CollectionAssert.AreEqual(new[] { "first_bf16", "second" }, all.Select(s => s.EntryName).ToArray());
        CollectionAssert.AreEqual(new[] { ".u64", ".s64", ".s32", ".u32", ".f32" }, all[0].Parameters.Select(p => p.Type).ToArray());
        CollectionAssert.AreEqual(new[] { "a_ptr", "count", "n", "flags", "scale" }, all[0].Parameters.Select(p => p.Name).ToArray());
        Assert.AreEqual(0, all[1].Parameters.Count);
    }

    [TestMethod]
    public void FromArgs_MapsFieldTypesInOrder()
    {
        var sig = PtxSignature.FromArgs<SampleArgs>();
        CollectionAssert.AreEqual(new[] { ".u64", ".s64", ".s32", ".u32", ".f32" }, sig.Parameters.Select(p => p.Type).ToArray());
        Assert.IsTrue(PtxSignature.Parse(Sample, "first_bf16").TypesMatch(sig));
        Assert.AreEqual("", PtxSignature.Parse(Sample, "first_bf16").DescribeMismatch(sig));
    }

    [TestMethod]
    public void TypesMatch_DetectsReorderedFields()
    {
        var ptx = PtxSignature.Parse(Sample, "first_bf16");
        var cs = PtxSignature.FromArgs<WrongOrderArgs>();
        Assert.IsFalse(ptx.TypesMatch(cs));
        StringAssert.Contains(ptx.DescribeMismatch(cs), "differs");
    }

    [TestMethod]
    public void FromArgs_UnsupportedFieldType_Throws()
    {
        Assert.ThrowsExactly<ArgumentException>(() => PtxSignature.FromArgs<DoubleArgs>());
    }

    [TestMethod]
    public void Parse_UnknownEntry_ThrowsListingEntries()
    {
        var ex = Assert.ThrowsExactly<KeyNotFoundException>(() => PtxSignature.Parse(Sample, "third"));
        StringAssert.Contains(ex.Message, "first_bf16");
    }

    [TestMethod]
    public void ParseAll_BadParameter_Throws()
    {
        Assert.ThrowsExactly<FormatException>(() => PtxSignature.ParseAll(".entry k(.param .u64)"));
    }
}
