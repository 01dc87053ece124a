using MoeNative.Interop;

namespace MoeNative.Tests.Interop;

/// <summary>DeviceBuffer argument checks, which run before any driver call (so they hold without a GPU).</summary>
[TestClass]
public sealed class DeviceBufferArgumentTests
{
    [TestMethod]
    [DataRow(-1L)]
    [DataRow(long.MinValue)]
    public void Constructor_NegativeLength_ThrowsBeforeTouchingTheDriver(long length)
    {
        // ctx is null on purpose: the length is validated first, so no context (and no GPU) is needed.
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new DeviceBuffer<float>(null!, length));
        Assert.AreEqual("length", e.ParamName);
    }

    [TestMethod]
    public void Constructor_ByteSizeOverflow_Throws()
    {
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new DeviceBuffer<double>(null!, long.MaxValue / 4));
        Assert.AreEqual("length", e.ParamName);
    }

    [TestMethod]
    public void Constructor_NullContext_ThrowsArgumentNull()
    {
        Assert.ThrowsExactly<ArgumentNullException>(() => new DeviceBuffer<float>(null!, 16));
    }

    [TestMethod]
    [DataRow(0L, 0L, 0L, DisplayName = "empty buffer, empty copy")]
    [DataRow(10L, 0L, 10L, DisplayName = "whole buffer")]
    [DataRow(10L, 10L, 0L, DisplayName = "empty copy at the end")]
    [DataRow(10L, 3L, 7L, DisplayName = "tail")]
    public void CheckRange_Valid_DoesNotThrow(long length, long offset, long count)
    {
        DeviceBuffer<float>.CheckRange(length, offset, count, "offset");
        Assert.AreEqual(length * 4, DeviceBuffer<float>.CheckedByteSize(length));
    }

    [TestMethod]
    [DataRow(10L, -1L, 1L, DisplayName = "negative offset")]
    [DataRow(10L, 11L, 0L, DisplayName = "offset past the end")]
    [DataRow(10L, 3L, 8L, DisplayName = "copy runs past the end")]
    [DataRow(10L, 0L, 11L, DisplayName = "span longer than the buffer")]
    [DataRow(10L, long.MaxValue, 1L, DisplayName = "huge offset")]
    [DataRow(10L, 5L, long.MaxValue, DisplayName = "count overflowing offset + count")]
    public void CheckRange_Invalid_ThrowsNamingTheOffset(long length, long offset, long count)
    {
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => DeviceBuffer<float>.CheckRange(length, offset, count, "dstOffset"));
        Assert.AreEqual("dstOffset", e.ParamName);
    }
}
