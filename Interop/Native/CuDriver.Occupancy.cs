using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

internal static unsafe partial class CuDriver
{
    /// <summary>How many CTAs of <paramref name="blockSize"/> threads with <paramref name="dynamicSMemSize"/> bytes of
    /// dynamic shared memory can be resident on one SM at once for <paramref name="func"/>, as the driver allocates it
    /// (its registers, static shared memory and the SM's limits).</summary>
    [LibraryImport(Lib, EntryPoint = "cuOccupancyMaxActiveBlocksPerMultiprocessor")]
    internal static partial CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int* numBlocks, IntPtr func, int blockSize, nuint dynamicSMemSize);

    /// <summary>The most clusters of <paramref name="config"/>'s cluster dimension (an attribute) that can run at
    /// once for <paramref name="func"/> with its block and dynamic shared memory (CUDA 11.8+; the grid is ignored).</summary>
    [LibraryImport(Lib, EntryPoint = "cuOccupancyMaxActiveClusters")]
    internal static partial CUresult cuOccupancyMaxActiveClusters(int* numClusters, IntPtr func, CUlaunchConfig* config);
}
