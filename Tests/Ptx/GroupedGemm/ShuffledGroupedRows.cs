using MoeNative.Interop;
using MoeNative.Ptx;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>
/// The routing of a grouped-GEMM test on the device: m_sizes as given and a random permutation of the rows as the
/// gather table (from <paramref name="rng"/>, so the test's printed seed reproduces it), wrapped as
/// <see cref="GroupedRows"/> with top-k <paramref name="topK"/>. Rows = Σ m_sizes, Experts = m_sizes.Length.
/// </summary>
internal sealed class ShuffledGroupedRows(CudaContext ctx, int[] mSizes, int topK, Random rng) : IDisposable
{
    private readonly DeviceBuffer<int> _mSizes = DeviceBuffer<int>.FromHost(ctx, mSizes);
    private readonly DeviceBuffer<int> _gather = DeviceBuffer<int>.FromHost(ctx, Shuffled(mSizes.Sum(), rng));

    public int Rows { get; } = mSizes.Sum();
    public int Experts { get; } = mSizes.Length;
    public GroupedRows Grouped => new(_mSizes.DevicePointer, _gather.DevicePointer, Rows, Experts, topK);

    private static int[] Shuffled(int rows, Random rng)
    {
        int[] gather = Enumerable.Range(0, rows).ToArray();
        rng.Shuffle(gather);
        return gather;
    }

    public void Dispose()
    {
        _mSizes.Dispose();
        _gather.Dispose();
    }
}
