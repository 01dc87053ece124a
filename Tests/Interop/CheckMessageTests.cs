using MoeNative.Interop;

namespace MoeNative.Tests.Interop;

/// <summary>CheckMessage formats a check's text only when the check fails; DeviceRangeChecks are the launchers' one copy.</summary>
[TestClass]
public sealed class CheckMessageTests
{
    private static int s_formatted;

    /// <summary>Counts how often it is formatted, so a test sees whether the message was built.</summary>
    private sealed class Probe
    {
        public override string ToString()
        {
            s_formatted++;
            return "probe";
        }
    }

    private static readonly Probe TheProbe = new();

    [TestMethod]
    public void PassingCheck_FormatsNothing_AndAllocatesNothing()
    {
        var ok = new DeviceRange(0x1000, 64);
        DeviceRangeChecks.Need(ok, 64, "x", $"[{TheProbe}] bf16"); // warm
        s_formatted = 0;
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            DeviceRangeChecks.Need(ok, 64, "x", $"[T={i},H={TheProbe}] bf16");
            DeviceRangeChecks.Need(DeviceRange.Null, 0, "none", $"[T={i}] {TheProbe}");
            DeviceRangeChecks.Need(new DeviceRange(0x1000, DeviceRange.UnknownSize), 1 << 20, "unknown", $"{TheProbe}");
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.AreEqual(0, s_formatted, "a passing check must not format its message");
        Assert.AreEqual(0L, allocated);
    }

    [TestMethod]
    public void TooSmall_ThrowsWithTheFormattedShape()
    {
        s_formatted = 0;
        var ex = Assert.ThrowsExactly<ArgumentException>(() =>
            DeviceRangeChecks.Need(new DeviceRange(0x1000, 63), 64, "x", $"[T={4},H={TheProbe}] bf16"));
        Assert.AreEqual("x", ex.ParamName);
        StringAssert.Contains(ex.Message, "x must hold [T=4,H=probe] bf16 = 64 bytes; it has 63.");
        Assert.AreEqual(1, s_formatted);
    }

    [TestMethod]
    public void NullPointer_ThrowsNamingTheShape()
    {
        var ex = Assert.ThrowsExactly<ArgumentException>(() => DeviceRangeChecks.Need(DeviceRange.Null, 8, "gather", $"[TK={2}] i32"));
        Assert.AreEqual("gather", ex.ParamName);
        StringAssert.Contains(ex.Message, "gather [TK=2] i32 is a null device pointer.");
    }

    [TestMethod]
    public void Aligned_RejectsAMisalignedPointer()
    {
        DeviceRangeChecks.Aligned(new DeviceRange(0x1010, 16), 16, "x");
        var ex = Assert.ThrowsExactly<ArgumentException>(() => DeviceRangeChecks.Aligned(new DeviceRange(0x1008, 16), 16, "x"));
        StringAssert.Contains(ex.Message, "0x1008");
        StringAssert.Contains(ex.Message, "16-byte aligned");
    }

    [TestMethod]
    [DataRow(0L, 0L, true)]
    [DataRow(0x1000L, 8L, true)]
    [DataRow(0x1000L, 9L, false)]
    public void CanHold_IsTheRangeRule(long pointer, long need, bool expected)
    {
        Assert.AreEqual(expected, new DeviceRange((ulong)pointer, 8).CanHold(need));
        Assert.IsFalse(DeviceRange.Null.CanHold(1));
        Assert.IsTrue(new DeviceRange(0x1000, DeviceRange.UnknownSize).CanHold(long.MaxValue));
    }
}
