using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.Elementwise;

/// <summary>The SwiGLU row kernels' block size: the fewest 128-thread steps over the row's 8-column chunks, then the
/// fewest whole warps per step (no idle warp on a row), 32 for I = 0.</summary>
[TestClass]
public sealed class SwiGluRowThreadsTests
{
    [TestMethod]
    [DataRow(0, 32)]
    [DataRow(1, 32)]
    [DataRow(13, 32)]       // 2 chunks
    [DataRow(256, 32)]      // 32 chunks
    [DataRow(264, 64)]      // 33 chunks
    [DataRow(768, 96)]      // Qwen3-30B-A3B: 96 chunks, one step
    [DataRow(1024, 128)]    // 128 chunks, one step
    [DataRow(1025, 96)]     // 129 chunks: two steps of 65
    [DataRow(1536, 96)]     // Qwen3-235B-A22B: 192 chunks, two steps of 96
    [DataRow(2048, 128)]    // two steps of 128
    [DataRow(2056, 96)]     // 257 chunks: three steps of 86
    public void Threads_CoverTheRowWithWholeWarps(int inter, int threads)
    {
        int actual = MoeKernels.SwiGluRowThreads(inter);
        Assert.AreEqual(threads, actual);
        long chunks = Math.Max(1, (inter + 7L) / 8);
        long steps = (chunks + actual - 1) / actual;
        Assert.IsTrue(actual % 32 == 0 && actual <= 128, "whole warps, at most 128 threads");
        Assert.AreEqual((chunks + 127) / 128, steps, "no more steps than 128-thread blocks would take");
        Assert.IsTrue(steps * actual - chunks < 32 * steps, "no whole warp idles in every step");
    }
}
