using System.Runtime.InteropServices;
using MoeNative.Interop;
using MoeNative.Ptx;
using MoeNative.Reference;

namespace MoeNative.Blocks;

// Diagnostics and test hooks of the fused block (internal: tests and the benchmark breakdown).
public sealed partial class Qwen3MoeFusedBlock
{
    internal BlockWorkspace? ForwardWorkspaceForTests => _forwardWorkspace;

    /// <summary>
    /// Diagnostics hook (benchmark kernel breakdown): when set, called on the stream after each step of the forward and
    /// backward launch sequences with the step's name, e.g. to record a CUDA event there. Null (the default) costs nothing.
    /// </summary>
    internal Action<CudaStream, string>? StepProbe { get; set; }

    private void Probe(CudaStream s, string step) => StepProbe?.Invoke(s, step);

    /// <summary>
    /// Synchronously reads the selected experts [T,k] the last forward used (its own top-k or the routing passed in),
    /// e.g. to count the experts hit. Synchronises the context.
    /// </summary>
    internal int[] ReadSelected(int tokens)
    {
        ThrowIfDisposed();
        if (!_saved.Valid || _saved.Tokens != tokens)
            throw new InvalidOperationException($"No forward of T={tokens} to read the routing of.");
        var selected = new int[tokens * Config.TopK];
        if (selected.Length == 0) return selected;
        if (_saved.Selected.Pointer != _forwardWorkspace!.Ptr(BlockBuffer.Selected))
            throw new InvalidOperationException("The last forward used caller-provided routing; read it from the caller's buffer.");
        Context.Synchronize();
        return DeviceTransfer.DownloadInt32(_forwardWorkspace.Arena, _forwardWorkspace.Offset(BlockBuffer.Selected), selected.Length);
    }
}
