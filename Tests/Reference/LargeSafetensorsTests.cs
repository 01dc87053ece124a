using System.Buffers.Binary;
using MoeNative.Reference;
using MoeNative.Reference.IO;
using MoeNative.Interop;

namespace MoeNative.Tests.Reference;

/// <summary>
/// Safetensors past 2 GiB and 4 GiB, on sparse files: the writer streams generated data whose zero runs become holes
/// (so a 5 GiB tensor costs a few MiB of disk), the reader maps it and reads slices at 64-bit offsets. Markers
/// written at chosen offsets (straddling 2 GiB and 4 GiB) must read back exactly; everything else must read zero.
/// </summary>
[TestClass]
public sealed class LargeSafetensorsTests
{
    private const long GiB = 1L << 30;
    private DirectoryInfo _dir = null!;

    public TestContext TestContext { get; set; } = null!;

    [TestInitialize]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("moenative-big-");

    [TestCleanup]
    public void DeleteDirectory()
    {
        _dir.Delete(recursive: true);
        GC.Collect(); // the 2 GB arrays of one test are gone before the next allocates its own
    }

    private string PathOf(string name) => Path.Combine(_dir.FullName, name);

    /// <summary>A tensor of <paramref name="bytes"/> zero bytes except an 8-byte marker (its own offset, little-endian
    /// u64, xor a tag) at each of <paramref name="markers"/>, written in 1 MiB chunks.</summary>
    private static Action<Stream> Markers(long bytes, long[] markers) => s =>
    {
        var chunk = new byte[1 << 20];
        for (long start = 0; start < bytes; start += chunk.Length)
        {
            int n = (int)Math.Min(chunk.Length, bytes - start);
            Array.Clear(chunk);
            foreach (long m in markers)
                for (int b = 0; b < 8; b++)
                    if (m + b >= start && m + b < start + n) chunk[m + b - start] = MarkerByte(m, b);
            s.Write(chunk, 0, n);
        }
    };

    private static byte MarkerByte(long offset, int b) => (byte)((ulong)(offset ^ 0x5A5A_1234_0F0F_7777L) >> (8 * b));

    private static void AssertMarker(SafetensorsTensorView view, long offset)
    {
        ReadOnlySpan<byte> got = view.Slice(offset, 8);
        for (int b = 0; b < 8; b++)
            Assert.AreEqual(MarkerByte(offset, b), got[b], $"byte {offset + b} of '{view.Info.Name}'");
    }

    [TestMethod]
    public void Tensor_Over4GiB_WrittenStreamedSparse_ReadAsMappedSlices()
    {
        // BF16 [2^31 + 2^29] = 5 GiB, then a small F32 tensor whose data starts past 5 GiB.
        long elements = (1L << 31) + (1L << 29), bytes = elements * 2;
        long[] markers = [0, 2 * GiB - 4, 4 * GiB - 4, 4 * GiB + 4096, bytes - 8];
        string path = PathOf("big.safetensors");
        float[] tail = [1.5f, -2f, 3.25f, 1e-3f];
        SafetensorsWriter.Write(path,
        [
            SafetensorsEntry.FromWriter("big", SafetensorsDType.BF16, [elements], Markers(bytes, markers)),
            SafetensorsEntry.FromFloats("tail", [4], tail),
        ]);
        long allocated = AllocatedBytes(path);
        TestContext.WriteLine($"file {new FileInfo(path).Length} bytes, {allocated} allocated on disk");
        Assert.IsGreaterThan(5 * GiB, new FileInfo(path).Length);
        if (allocated >= 0) Assert.IsLessThan(64L << 20, allocated, "the zero runs must be holes");

        using SafetensorsFile file = SafetensorsFile.Open(path);
        SafetensorsTensorView big = file.View("big");
        Assert.AreEqual(bytes, big.ByteLength);
        foreach (long m in markers) AssertMarker(big, m);
        Assert.IsFalse(big.Slice(3 * GiB, 1 << 16).ContainsAnyExcept((byte)0), "bytes between markers are zero");
        Assert.IsGreaterThanOrEqualTo(5 * GiB, file.Info("tail").Begin);
        CollectionAssert.AreEqual(tail, file.ReadFloat32("tail", [4]));

        StringAssert.Contains(Assert.ThrowsExactly<SafetensorsFormatException>(() => file.RawBytes("big")).Message, "View(name)");
        StringAssert.Contains(Assert.ThrowsExactly<SafetensorsFormatException>(() => file.ReadFloat32("big")).Message, "too large for one array");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => big.Slice(bytes - 4, 8));
        file.Dispose();
        Assert.ThrowsExactly<ObjectDisposedException>(() => big.Slice(0, 8));
    }

    [TestMethod]
    public void FloatArray_Over2GiB_WrittenF32Streamed()
    {
        // 540M floats = 2.16 GB of F32: past the 2 GiB that a byte[] (and the old checked-int size) allowed.
        const int n = 540_000_000;
        int[] marked = [0, (1 << 29) - 1, 1 << 29, n - 1]; // float 1 << 29 starts at byte 2 GiB
        var values = new float[n];
        foreach (int i in marked) values[i] = i + 0.5f;
        string path = PathOf("floats.safetensors");
        SafetensorsWriter.Write(path, [SafetensorsEntry.FromFloats("x", [n], values)]);
        values = null!;

        using SafetensorsFile file = SafetensorsFile.Open(path);
        SafetensorsTensorView x = file.View("x");
        Assert.AreEqual(4L * n, x.ByteLength);
        foreach (int i in marked) Assert.AreEqual(i + 0.5f, BitConverter.ToSingle(x.Slice(4L * i, 4)), $"x[{i}]");
        Assert.IsFalse(x.Slice(4L * ((1 << 29) + 1), 1 << 20).ContainsAnyExcept((byte)0));
    }

    [TestMethod]
    public void F32Tensor_Over2GiB_ReadAsOneFloatArray()
    {
        // 540M F32 values generated while writing (no source array); read back into one 2.16 GB float[].
        const int n = 540_000_000;
        int[] marked = [0, (1 << 29) - 1, 1 << 29, n - 1];
        string path = PathOf("floats.safetensors");
        SafetensorsWriter.Write(path, [SafetensorsEntry.FromWriter("x", SafetensorsDType.F32, [n], s =>
        {
            var chunk = new float[1 << 18];
            for (long start = 0; start < n; start += chunk.Length)
            {
                int count = (int)Math.Min(chunk.Length, n - start);
                Array.Clear(chunk);
                foreach (int i in marked) if (i >= start && i < start + count) chunk[i - start] = i + 0.5f;
                s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(chunk.AsSpan(0, count)));
            }
        })]);
        using SafetensorsFile file = SafetensorsFile.Open(path);
        float[] back = file.ReadFloat32("x", [n]);
        foreach (int i in marked) Assert.AreEqual(i + 0.5f, back[i], $"x[{i}]");
        Assert.AreEqual(0f, back[(1 << 29) + 1]);
        Assert.AreEqual(0f, back[n - 2]);
    }

    [TestMethod]
    public void BF16FromFloats_ConvertsChunkByChunk_AcrossChunkBoundaries()
    {
        // 5M values: more than two 2M-element conversion chunks, with a partial last chunk.
        const int n = 5_000_000;
        float[] values = TensorRandom.Normal(n, 811, 1f, ScalarType.BFloat16);
        string path = PathOf("bf16.safetensors");
        SafetensorsWriter.Write(path, [SafetensorsEntry.FromFloats("w", [n], values, SafetensorsDType.BF16)]);
        using SafetensorsFile file = SafetensorsFile.Open(path);
        CollectionAssert.AreEqual(values, file.ReadFloat32("w", [n]), "bf16-representable values round-trip exactly (seed 811)");
    }

    [TestMethod]
    public void FailedWrite_LeavesTargetUntouchedAndNoTempFile()
    {
        string path = PathOf("keep.safetensors");
        SafetensorsWriter.Write(path, [SafetensorsEntry.FromFloats("old", [2], [1f, 2f])]);
        byte[] before = File.ReadAllBytes(path);

        var failed = Assert.ThrowsExactly<SafetensorsWriteException>(() => SafetensorsWriter.Write(path,
            [SafetensorsEntry.FromWriter("t", SafetensorsDType.F32, [1 << 20], s => { s.Write(new byte[4096]); throw new IOException("disk full (simulated)"); })]));
        StringAssert.Contains(failed.Message, "disk full (simulated)");
        var short_ = Assert.ThrowsExactly<InvalidOperationException>(() => SafetensorsWriter.Write(path,
            [SafetensorsEntry.FromWriter("t", SafetensorsDType.F32, [4], s => s.Write(new byte[12]))]));
        StringAssert.Contains(short_.Message, "wrote 12 bytes, 16 expected");

        CollectionAssert.AreEqual(before, File.ReadAllBytes(path), "the target is untouched");
        CollectionAssert.AreEquivalent(new[] { "keep.safetensors" }, _dir.GetFiles().Select(f => f.Name).ToArray(), "no temp file left");
    }

    [TestMethod]
    public void LongTargetName_TempNameDoesNotDependOnIt()
    {
        string name = new string('n', 240) + ".safetensors"; // 252 characters: legal; name + a suffix would not be
        string path = PathOf(name);
        SafetensorsWriter.Write(path, [SafetensorsEntry.FromFloats("a", [1], [7f])]);
        using SafetensorsFile file = SafetensorsFile.Open(path);
        Assert.AreEqual(7f, file.ReadFloat32("a")[0]);
    }

    [TestMethod]
    public void HeaderOffsets_AreSixtyFourBit()
    {
        // Two 3 GiB zero tensors: the second's data_offsets pass 2^32 in the JSON header.
        long elements = 3 * GiB / 4;
        string path = PathOf("two.safetensors");
        SafetensorsWriter.Write(path,
        [
            SafetensorsEntry.FromWriter("a", SafetensorsDType.F32, [elements], Markers(3 * GiB, [])),
            SafetensorsEntry.FromWriter("b", SafetensorsDType.F32, [elements], Markers(3 * GiB, [3 * GiB - 8])),
        ]);
        using (var stream = File.OpenRead(path))
        {
            var len = new byte[8];
            stream.ReadExactly(len);
            var header = new byte[BinaryPrimitives.ReadUInt64LittleEndian(len)];
            stream.ReadExactly(header);
            StringAssert.Contains(System.Text.Encoding.UTF8.GetString(header), $"\"data_offsets\":[{3 * GiB},{6 * GiB}]");
        }
        using SafetensorsFile file = SafetensorsFile.Open(path);
        AssertMarker(file.View("b"), 3 * GiB - 8);
    }

    /// <summary>Disk blocks allocated to a file (st_blocks * 512 through <c>du</c>), or -1 where that cannot be read.</summary>
    private static long AllocatedBytes(string path)
    {
        try
        {
            using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("du", ["--block-size=1", path])
            { RedirectStandardOutput = true, UseShellExecute = false })!;
            string text = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return p.ExitCode == 0 && long.TryParse(text.Split('\t')[0], out long v) ? v : -1;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return -1;
        }
    }
}
