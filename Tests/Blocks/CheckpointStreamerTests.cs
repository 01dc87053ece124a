using System.Security.Cryptography;
using MoeNative.Blocks;
using MoeNative.Reference;
using MoeNative.Reference.IO;
using MoeNative.Tests.Cli;
using MoeNative.Interop;

namespace MoeNative.Tests.Blocks;

/// <summary>
/// The chunked checkpoint streaming that feeds the device loader, on the CPU: a host <see cref="IStagingTarget"/>
/// stands in for the pinned/GPU one (same slots and submit contract), converts each chunk to the destination dtype
/// and checks that every destination is filled exactly once, contiguously, in order; a SHA-256 of each destination's bytes
/// is compared with the host loader's values rounded to the same dtype. Host memory of the streaming is measured.
/// </summary>
[TestClass]
public sealed class CheckpointStreamerTests
{
    public TestContext TestContext { get; set; } = null!;

    /// <summary>Host stand-in: two staging slots; per destination a hash of the converted bytes and the next element expected.</summary>
    private sealed class HostTarget(int chunkBytes, ScalarType destDType, long[] destElements, bool keepBytes) : IStagingTarget
    {
        private readonly byte[][] _slots = [new byte[chunkBytes], new byte[chunkBytes]];
        private readonly byte[] _converted = new byte[chunkBytes / 2 * 4]; // widest conversion: 2-byte source to fp32
        private readonly float[] _floats = new float[chunkBytes / 2];
        private readonly IncrementalHash[] _hash = destElements.Select(_ => IncrementalHash.CreateHash(HashAlgorithmName.SHA256)).ToArray();
        private readonly long[] _next = new long[destElements.Length];
        private readonly bool[] _acquired = new bool[2];

        public int ChunkBytes => chunkBytes;
        public int Submits { get; private set; }
        public List<(int Destination, long ElementOffset, byte[] Bytes)> Kept { get; } = [];

        public Span<byte> Acquire(int slot)
        {
            Assert.IsFalse(_acquired[slot], $"slot {slot} acquired twice without a submit");
            _acquired[slot] = true;
            return _slots[slot];
        }

        public void Submit(int slot, int byteCount, ScalarType sourceDType, int destination, long destinationElementOffset)
        {
            Assert.IsTrue(_acquired[slot], $"slot {slot} submitted without an acquire");
            _acquired[slot] = false;
            Submits++;
            int count = byteCount / sourceDType.SizeOf();
            Assert.AreEqual(0, byteCount % sourceDType.SizeOf(), "a chunk holds whole elements");
            Assert.AreEqual(_next[destination], destinationElementOffset, $"destination {destination}: chunks arrive contiguously and in order");
            Assert.IsLessThanOrEqualTo(destElements[destination], destinationElementOffset + count, $"destination {destination} overflows");
            Span<float> f = _floats.AsSpan(0, count);
            StorageConvert.FromStorage(_slots[slot].AsSpan(0, byteCount), sourceDType, f);
            Span<byte> bytes = _converted.AsSpan(0, count * destDType.SizeOf());
            StorageConvert.ToStorage(f, destDType, bytes);
            _hash[destination].AppendData(bytes);
            if (keepBytes) Kept.Add((destination, destinationElementOffset, bytes.ToArray()));
            _next[destination] += count;
        }

        public void Complete()
        {
            for (int d = 0; d < destElements.Length; d++)
                Assert.AreEqual(destElements[d], _next[d], $"destination {d} is filled completely");
        }

        public string Hash(int destination) => Convert.ToHexString(_hash[destination].GetCurrentHash());
    }

    private static string ExpectedHash(float[] values, ScalarType dtype)
    {
        var bytes = new byte[(long)values.Length * dtype.SizeOf()];
        StorageConvert.ToStorage(values, dtype, bytes);
        return Convert.ToHexString(SHA256.HashData(bytes));
    }

    [TestMethod]
    [DataRow(CheckpointLayout.PerExpert, SafetensorsDType.BF16, ScalarType.BFloat16, DisplayName = "per-expert bf16 -> bf16")]
    [DataRow(CheckpointLayout.PerExpert, SafetensorsDType.F32, ScalarType.BFloat16, DisplayName = "per-expert f32 -> bf16")]
    [DataRow(CheckpointLayout.Fused, SafetensorsDType.F16, ScalarType.Float32, DisplayName = "fused f16 -> fp32")]
    [DataRow(CheckpointLayout.Fused, SafetensorsDType.BF16, ScalarType.Float16, DisplayName = "fused bf16 -> fp16")]
    public void MultiLayerLoad_FillsEveryDestinationExactly_WithHostMemoryBounded(CheckpointLayout layout, SafetensorsDType fileDType, ScalarType dtype)
    {
        // 6 layers of H=256, I=96, E=16 (k=4): 1.2-2.4 MB per layer, streamed in 48 KiB chunks (tensors of 48 KiB and
        // 96 KiB: chunks end inside and at the ends of tensors).
        var c = new MoeConfig(HiddenSize: 256, IntermediateSize: 96, NumExperts: 16, TopK: 4);
        const int layers = 6, seed = 17, chunk = 48 << 10;
        using var folder = new TempFolder("stream");
        long fileBytes = SyntheticCheckpoint.Write(folder.Path("ckpt"), c, layers, fileDType, layout, seed);
        TestContext.WriteLine($"{layout} {fileDType} -> {dtype.ShortName()}: {fileBytes} bytes in {layers} layers, seed {seed}");

        using SafetensorsCollection files = SafetensorsCollection.Open(folder.Path("ckpt"));
        CollectionAssert.AreEqual(Enumerable.Range(0, layers).ToArray(), MoeCheckpointLayout.MoeLayers(files).ToArray());
        long[] elements = [c.GateElements, c.GateUpProjElements, c.DownProjElements];
        var plans = Enumerable.Range(0, layers).Select(l => MoeCheckpointLayout.Resolve(c, files, l)).ToArray();
        var targets = plans.Select(_ => new HostTarget(chunk, dtype, elements, keepBytes: false)).ToArray();

        // ---- measured: the streaming of every layer (targets and their staging allocated above) ----
        GC.Collect();
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        long streamed = 0;
        for (int l = 0; l < layers; l++) CheckpointStreamer.Run(plans[l], targets[l], n => streamed += n);
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        TestContext.WriteLine($"streamed {streamed} bytes in {targets.Sum(t => t.Submits)} chunks; managed allocation while streaming: {allocated} bytes");
        Assert.AreEqual(fileBytes, streamed, "every tensor byte streamed once");
        Assert.IsLessThan(256L << 10, allocated, "streaming allocates no per-tensor or per-layer buffers");

        for (int l = 0; l < layers; l++)
        {
            MoeWeights host = MoeCheckpoint.LoadWeights(c, files, l, dtype); // independent path: whole tensors, host conversion
            Assert.AreEqual(ExpectedHash(host.Gate, dtype), targets[l].Hash(0), $"layer {l} router");
            Assert.AreEqual(ExpectedHash(host.GateUpProj, dtype), targets[l].Hash(1), $"layer {l} gate_up");
            Assert.AreEqual(ExpectedHash(host.DownProj, dtype), targets[l].Hash(2), $"layer {l} down");
        }
    }

    [TestMethod]
    public void SyntheticValues_AreTheDocumentedHashValues_InBothLayouts()
    {
        var c = new MoeConfig(HiddenSize: 16, IntermediateSize: 8, NumExperts: 3, TopK: 2);
        using var folder = new TempFolder("synth");
        SyntheticCheckpoint.Write(folder.Path("pe"), c, 2, SafetensorsDType.F32, CheckpointLayout.PerExpert, 5);
        SyntheticCheckpoint.Write(folder.Path("fu"), c, 2, SafetensorsDType.F32, CheckpointLayout.Fused, 5);
        MoeWeights pe = MoeCheckpoint.LoadWeights(c, folder.Path("pe"), 1);
        MoeWeights fu = MoeCheckpoint.LoadWeights(c, folder.Path("fu"), 1);
        CollectionAssert.AreEqual(pe.GateUpProj, fu.GateUpProj, "the two layouts hold the same values");
        CollectionAssert.AreEqual(pe.DownProj, fu.DownProj);
        float hs = 1f / MathF.Sqrt(16), isd = 1f / MathF.Sqrt(8);
        Assert.AreEqual(SyntheticCheckpoint.Value(5, 1, 0, 7, hs), pe.Gate[7]);
        Assert.AreEqual(SyntheticCheckpoint.Value(5, 1, 1 + 3 * 2, 9, hs), pe.GateProjOf(2)[9], "expert 2 gate_proj");
        Assert.AreEqual(SyntheticCheckpoint.Value(5, 1, 2 + 3 * 2, 9, hs), pe.UpProjOf(2)[9], "expert 2 up_proj");
        Assert.AreEqual(SyntheticCheckpoint.Value(5, 1, 3 + 3 * 1, 100, isd), pe.DownProjOf(1)[100], "expert 1 down_proj");
        float bound = MathF.Sqrt(3) * hs;
        Assert.IsTrue(pe.GateUpProj.All(v => MathF.Abs(v) <= bound) && pe.GateUpProj.Any(v => MathF.Abs(v) > bound / 2), "uniform in +-sqrt(3)/sqrt(H)");
        MoeConfig fromFile = MoeConfig.FromFile(folder.Path("pe"));
        Assert.AreEqual(c with { Name = fromFile.Name }, fromFile, "config.json describes the layer");
    }

    [TestMethod]
    public void Tensors_Over4GiB_StreamToSixtyFourBitDestinationOffsets()
    {
        // Qwen2-57B-A14B dims (H=3584, I=2560, E=64) in F32: gate_up [64,5120,3584] is 4.7 GB, down 2.35 GB. The file is
        // sparse (zero runs are holes) with markers at chosen elements; the streamed chunks must carry each marker to
        // its element of the destination, far past 2^31 elements' worth of bytes.
        var c = new MoeConfig(HiddenSize: 3584, IntermediateSize: 2560, NumExperts: 64, TopK: 8);
        using var folder = new TempFolder("stream-big");
        long[] gateUpMarks = [0, (1L << 29) + 3, (1L << 30) + 5, c.GateUpProjElements - 1], downMarks = [(1L << 29) - 1, c.DownProjElements - 1];
        SafetensorsWriter.Write(folder.Path("big.safetensors"),
        [
            SafetensorsEntry.FromFloats("gate.weight", [c.NumExperts, c.HiddenSize], new float[c.GateElements]),
            SafetensorsEntry.FromWriter("experts.gate_up_proj", SafetensorsDType.F32, [c.NumExperts, 2L * c.IntermediateSize, c.HiddenSize], Marked(c.GateUpProjElements, gateUpMarks)),
            SafetensorsEntry.FromWriter("experts.down_proj", SafetensorsDType.F32, [c.NumExperts, c.HiddenSize, c.IntermediateSize], Marked(c.DownProjElements, downMarks)),
        ]);
        using SafetensorsCollection files = SafetensorsCollection.Open(folder.Path("big.safetensors"));
        var plan = MoeCheckpointLayout.Resolve(c, files, null);
        var target = new MarkerTarget(16 << 20);
        long baseline = ProcessMemory.ResidentBytes();
        CheckpointStreamer.Run(plan, target, null);
        long growth = target.PeakResident - baseline;
        TestContext.WriteLine($"resident set: {baseline >> 20} MiB before, peak {target.PeakResident >> 20} MiB while streaming 7 GB (sampled per 16 MiB chunk)");
        if (OperatingSystem.IsLinux()) Assert.IsGreaterThan(0L, baseline, "VmRSS is readable on Linux");
        if (baseline >= 0) Assert.IsLessThan(256L << 20, growth, "host memory stays bounded: staging plus released mapped pages");
        CollectionAssert.AreEqual(gateUpMarks.Select(m => (1, m, MarkValue(m))).ToArray(), target.Found.Where(f => f.Destination == 1).ToArray());
        CollectionAssert.AreEqual(downMarks.Select(m => (2, m, MarkValue(m))).ToArray(), target.Found.Where(f => f.Destination == 2).ToArray());
    }

    [TestMethod]
    [DataRow(SafetensorsDType.BF16, float.NaN, ScalarType.BFloat16, true, DisplayName = "NaN in bf16")]
    [DataRow(SafetensorsDType.F16, float.PositiveInfinity, ScalarType.Float32, true, DisplayName = "+Inf in fp16")]
    [DataRow(SafetensorsDType.F32, 70000f, ScalarType.Float16, true, DisplayName = "f32 70000 overflows fp16")]
    [DataRow(SafetensorsDType.F32, 70000f, ScalarType.BFloat16, false, DisplayName = "f32 70000 is finite in bf16")]
    public void RequireFinite_RefusesTheFirstBadElement_NamingTensorAndIndex(SafetensorsDType fileDType, float bad, ScalarType dtype, bool refused)
    {
        var c = new MoeConfig(HiddenSize: 64, IntermediateSize: 48, NumExperts: 4, TopK: 2);
        using var folder = new TempFolder("finite");
        MoeWeights w = MoeWeights.Random(c, 12, ScalarType.BFloat16);
        const int expert = 2, index = 1000; // down_proj of expert 2, element 1000: chunk 1 (16-bit) or 2 (f32) of 2 KiB; the index counts from the tensor start
        w.DownProj[expert * 64 * 48 + index] = bad;
        CliTestData.WriteWeights(folder.Path("w.safetensors"), w, fileDType, perExpert: true, layer: null);
        using SafetensorsCollection files = SafetensorsCollection.Open(folder.Path("w.safetensors"));
        var plan = MoeCheckpointLayout.Resolve(c, files, null);
        var target = new HostTarget(2048, dtype, [c.GateElements, c.GateUpProjElements, c.DownProjElements], keepBytes: false);
        if (!refused)
        {
            CheckpointStreamer.Run(plan, target, null, requireFiniteIn: dtype);
            return;
        }
        var e = Assert.ThrowsExactly<NonFiniteInputException>(() => CheckpointStreamer.Run(plan, target, null, requireFiniteIn: dtype));
        StringAssert.Contains(e.Message, $"tensor 'experts.{expert}.down_proj.weight'");
        StringAssert.Contains(e.Message, $"in {dtype.ShortName()} at flat index {index}");
        StringAssert.Contains(e.Message, "--allow-nonfinite");
        CheckpointStreamer.Run(MoeCheckpointLayout.Resolve(c, files, null), new HostTarget(2048, dtype, [c.GateElements, c.GateUpProjElements, c.DownProjElements], false), null); // unchecked: streams
    }

    [TestMethod]
    public void ModelLoad_MoreThanFreeDeviceMemory_IsRefusedWithBothSizes()
    {
        MoeConfig c = MoeConfig.Preset("qwen3-30b-a3b");
        var e = Assert.ThrowsExactly<InvalidOperationException>(() =>
            Qwen3MoeModelWeights.CheckFits(150_000_000_000, 140_000_000_000, 48, c, ScalarType.BFloat16, "GPU X"));
        StringAssert.Contains(e.Message, "needs 150.00 GB");
        StringAssert.Contains(e.Message, "140.00 GB are free on GPU X");
        Qwen3MoeModelWeights.CheckFits(140_000_000_000, 140_000_000_000, 48, c, ScalarType.BFloat16, "GPU X"); // exactly fits
    }

    private static float MarkValue(long element) => 1 + element % 1000;

    private static Action<Stream> Marked(long elements, long[] marks) => s =>
    {
        var chunk = new float[1 << 20];
        for (long start = 0; start < elements; start += chunk.Length)
        {
            int n = (int)Math.Min(chunk.Length, elements - start);
            Array.Clear(chunk);
            foreach (long m in marks) if (m >= start && m < start + n) chunk[m - start] = MarkValue(m);
            s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(chunk.AsSpan(0, n)));
        }
    };

    /// <summary>Records every non-zero F32 element that arrives: (destination, element index, value).</summary>
    private sealed class MarkerTarget(int chunkBytes) : IStagingTarget
    {
        private readonly byte[][] _slots = [new byte[chunkBytes], new byte[chunkBytes]];
        public List<(int Destination, long Element, float Value)> Found { get; } = [];
        public long PeakResident { get; private set; } = -1;
        public int ChunkBytes => chunkBytes;
        public Span<byte> Acquire(int slot) => _slots[slot];

        public void Submit(int slot, int byteCount, ScalarType sourceDType, int destination, long destinationElementOffset)
        {
            PeakResident = Math.Max(PeakResident, ProcessMemory.ResidentBytes());
            ReadOnlySpan<float> f = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(_slots[slot].AsSpan(0, byteCount));
            for (int i = f.IndexOfAnyExcept(0f); i >= 0; i = f[(i + 1)..].IndexOfAnyExcept(0f) is var j and >= 0 ? i + 1 + j : -1)
                Found.Add((destination, destinationElementOffset + i, f[i]));
        }

        public void Complete() { }
    }
}
