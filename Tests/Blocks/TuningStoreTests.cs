using MoeNative.Blocks;
using MoeNative.Ptx;
using MoeNative.Interop;

namespace MoeNative.Tests.Blocks;

/// <summary>The on-disk kernel choices, on the CPU with a made-up card: round trip, merge, atomic replace, context
/// keying, corrupt and stale files ignored with one warning, invalid entries dropped, the directory variable.</summary>
[TestClass]
public sealed class TuningStoreTests
{
    private static readonly TuningContext s_context = new("Fake GPU 80GB sm_90 132 SMs", "12040", "0123456789abcdef",
        ScalarType.BFloat16, 2048, 768, 128, 8);

    private static readonly GemmConfig s_big = GemmConfig.Mma(128, 128, 3, GemmConfig.MmaBlockKWide);
    private static readonly GemmConfig s_small = GemmConfig.Mma(64, 64, 4);

    private DirectoryInfo _dir = null!;
    private readonly List<string> _warnings = [];

    [TestInitialize]
    public void Setup() => _dir = Directory.CreateTempSubdirectory("moenative-tuning-");

    [TestCleanup]
    public void Cleanup() => _dir.Delete(recursive: true);

    private TuningStore NewStore() => new(_dir.FullName, _warnings.Add);

    [TestMethod]
    public void Save_ThenLoad_GivesTheChoicesBack()
    {
        TunedChoice[] choices =
        [
            new(FusedGemm.FirstForward, 1024, s_big, 0.123),
            new(FusedGemm.SecondBackwardWeight, 64, s_small, 0.045),
        ];
        NewStore().Save(s_context, choices);

        IReadOnlyList<TunedChoice> loaded = new TuningStore(_dir.FullName, _warnings.Add).Load(s_context);

        CollectionAssert.AreEquivalent(choices, loaded.ToArray());
        Assert.IsEmpty(_warnings, string.Join("\n", _warnings));
        Assert.AreEqual(_dir.FullName, Path.GetDirectoryName(NewStore().PathOf(s_context)));
        StringAssert.StartsWith(Path.GetFileName(NewStore().PathOf(s_context)), "bf16-");
    }

    [TestMethod]
    public void EveryKernelFamily_RoundTrips()
    {
        GemmConfig hopper = GemmConfig.Wgmma(128, 4);
        TunedChoice[] choices =
        [
            new(FusedGemm.FirstForward, 4096, hopper, 0.3),
            new(FusedGemm.SecondForward, 4096, s_small, 0.2),
            new(FusedGemm.FirstBackwardData, 4096, GemmConfig.Wgmma(256, 4, cluster: 2), 0.4),
            new(FusedGemm.SecondBackwardData, 4096, GemmConfig.Wgmma(256, 3, staged: true), 0.5),
        ];
        TuningStore store = NewStore();
        store.Save(s_context, choices);

        IReadOnlyList<TunedChoice> loaded = store.Load(s_context);

        CollectionAssert.AreEquivalent(choices, loaded.ToArray());
        Assert.AreEqual(GemmMath.WgmmaSm90a, loaded.Single(c => c.Gemm == FusedGemm.FirstForward).Config.Family);
        Assert.AreEqual(2, loaded.Single(c => c.Gemm == FusedGemm.FirstBackwardData).Config.Cluster, "the cluster size is stored");
        Assert.IsTrue(loaded.Single(c => c.Gemm == FusedGemm.SecondBackwardData).Config.StagedEpilogue, "the staged epilogue is stored");
        Assert.IsFalse(loaded.Single(c => c.Gemm == FusedGemm.FirstForward).Config.StagedEpilogue);
        Assert.IsEmpty(_warnings, string.Join("\n", _warnings));

        TuningContext fp32 = s_context with { DType = ScalarType.Float32 };
        store.Save(fp32, [new(FusedGemm.FirstForward, 64, GemmConfig.Ffma64x64, 0.5)]);
        Assert.AreEqual(GemmConfig.Ffma64x64, store.Load(fp32).Single().Config);
    }

    [TestMethod]
    public void Save_MergesWithWhatIsStored_NewChoiceForTheSamePairWins()
    {
        TuningStore store = NewStore();
        store.Save(s_context, [new(FusedGemm.FirstForward, 1024, s_small, 0.2), new(FusedGemm.SecondForward, 1024, s_small, 0.1)]);
        store.Save(s_context, [new(FusedGemm.FirstForward, 1024, s_big, 0.15), new(FusedGemm.FirstForward, 16, s_small, 0.01)]);

        var loaded = store.Load(s_context).ToDictionary(c => (c.Gemm, c.ShapeClassTokens), c => c.Config);

        Assert.HasCount(3, loaded);
        Assert.AreEqual(s_big, loaded[(FusedGemm.FirstForward, 1024)]);
        Assert.AreEqual(s_small, loaded[(FusedGemm.SecondForward, 1024)]);
        Assert.AreEqual(s_small, loaded[(FusedGemm.FirstForward, 16)]);
        Assert.AreEqual(1, _dir.GetFiles().Length, "one file per context, no temp files left: " + string.Join(", ", _dir.GetFiles().Select(f => f.Name)));
    }

    [TestMethod]
    [DataRow("card", DisplayName = "another card")]
    [DataRow("driver", DisplayName = "another driver")]
    [DataRow("kernels", DisplayName = "another kernel text")]
    [DataRow("dtype", DisplayName = "another dtype")]
    [DataRow("dims", DisplayName = "other dims")]
    public void AnotherContext_SeesNothing(string change)
    {
        NewStore().Save(s_context, [new(FusedGemm.FirstForward, 1024, s_big, 0.1)]);
        TuningContext other = change switch
        {
            "card" => s_context with { Card = "Fake GPU 141GB sm_90 132 SMs" },
            "driver" => s_context with { Driver = "13000" },
            "kernels" => s_context with { KernelHash = "fedcba9876543210" },
            "dtype" => s_context with { DType = ScalarType.Float16 },
            _ => s_context with { IntermediateSize = 1536 },
        };

        Assert.AreNotEqual(s_context.Id, other.Id);
        Assert.IsEmpty(NewStore().Load(other));
        Assert.IsEmpty(_warnings, "a missing file is not a warning: " + string.Join("\n", _warnings));
    }

    [TestMethod]
    [DataRow("{ not json", "unreadable", DisplayName = "corrupt: not JSON")]
    [DataRow("", "unreadable", DisplayName = "corrupt: empty file")]
    [DataRow("null", "stale (empty)", DisplayName = "corrupt: JSON null")]
    [DataRow("{\"version\": 99, \"context\": \"x\", \"entries\": []}", "format version 99", DisplayName = "stale: other format version")]
    [DataRow("{\"version\": 2, \"context\": \"card=other\", \"entries\": []}", "another card", DisplayName = "stale: written for another context")]
    public void CorruptOrStaleFile_IgnoredWithOneWarning_ThenReplacedBySave(string content, string why)
    {
        TuningStore store = NewStore();
        File.WriteAllText(store.PathOf(s_context), content);

        IReadOnlyList<TunedChoice> loaded = store.Load(s_context);

        Assert.IsEmpty(loaded);
        Assert.HasCount(1, _warnings);
        StringAssert.Contains(_warnings[0], store.PathOf(s_context));
        StringAssert.Contains(_warnings[0], why);
        Assert.DoesNotContain("\n", _warnings[0]);

        store.Save(s_context, [new(FusedGemm.RouterForward, 128, s_small, 0.01)]);
        _warnings.Clear();
        Assert.HasCount(1, store.Load(s_context));
        Assert.IsEmpty(_warnings);
    }

    [TestMethod]
    public void InvalidEntry_DroppedWithAWarning_OthersKept()
    {
        TuningStore store = NewStore();
        store.Save(s_context, [new(FusedGemm.FirstForward, 1024, s_big, 0.1)]);
        string path = store.PathOf(s_context);
        string text = File.ReadAllText(path);
        // a tile the kernels cannot take (BlockM 96) and a GEMM that does not exist
        string bad = "{\"gemm\": \"FirstForward\", \"shape_class_tokens\": 16, \"block_m\": 96, \"block_n\": 64, \"block_k\": 32, \"stages\": 3, \"warps\": 3, \"milliseconds\": 1}, " +
                     "{\"gemm\": \"NoSuchGemm\", \"shape_class_tokens\": 16, \"block_m\": 64, \"block_n\": 64, \"block_k\": 32, \"stages\": 3, \"warps\": 2, \"milliseconds\": 1}, ";
        int at = text.IndexOf('[', StringComparison.Ordinal) + 1;
        File.WriteAllText(path, text[..at] + bad + text[at..]);

        IReadOnlyList<TunedChoice> loaded = store.Load(s_context);

        Assert.HasCount(1, loaded);
        Assert.AreEqual(s_big, loaded[0].Config);
        Assert.HasCount(2, _warnings, string.Join("\n", _warnings));
        Assert.IsTrue(_warnings.All(w => w.Contains("not a valid config", StringComparison.Ordinal)), string.Join("\n", _warnings));
    }

    [TestMethod]
    public void Save_IntoAnUnwritableTarget_ThrowsAndLeavesNoTempFile()
    {
        TuningStore store = NewStore();
        Directory.CreateDirectory(store.PathOf(s_context)); // the target name is taken by a folder: the rename fails

        Assert.Throws<IOException>(() => store.Save(s_context, [new(FusedGemm.FirstForward, 1024, s_big, 0.1)]));

        Assert.IsEmpty(_dir.GetFiles(), "temp file left: " + string.Join(", ", _dir.GetFiles().Select(f => f.Name)));
    }

    [TestMethod]
    public void DefaultDirectory_FollowsTheEnvironmentVariable()
    {
        string? before = Environment.GetEnvironmentVariable(TuningStore.DirectoryVariable);
        try
        {
            Environment.SetEnvironmentVariable(TuningStore.DirectoryVariable, _dir.FullName);
            Assert.AreEqual(_dir.FullName, TuningStore.DefaultDirectory);
            Assert.AreEqual(_dir.FullName, TuningStore.Default().Directory);
            Environment.SetEnvironmentVariable(TuningStore.DirectoryVariable, null);
            string fallback = TuningStore.DefaultDirectory;
            StringAssert.EndsWith(fallback, Path.Combine("moenative", "tuning"));
            Assert.AreNotEqual(_dir.FullName, fallback);
        }
        finally
        {
            Environment.SetEnvironmentVariable(TuningStore.DirectoryVariable, before);
        }
    }

    [TestMethod]
    public void KernelTextHash_DiffersByDtype_StableWithinAProcess()
    {
        string bf16 = TuningStore.KernelTextHash(ScalarType.BFloat16);

        Assert.AreEqual(bf16, TuningStore.KernelTextHash(ScalarType.BFloat16));
        Assert.AreNotEqual(bf16, TuningStore.KernelTextHash(ScalarType.Float32), "fp32 has other candidates (FFMA)");
        Assert.MatchesRegex("^[0-9a-f]{16}$", bf16);
    }
}
