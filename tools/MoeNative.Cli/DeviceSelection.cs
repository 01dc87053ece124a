namespace MoeNative.Cli;

/// <summary>Turns <c>--device</c> into "GPU or CPU", printing the CPU fallback note when there is no usable GPU.</summary>
internal static class DeviceSelection
{
    /// <summary>True: use the GPU. <see cref="DeviceChoice.Auto"/> without a usable GPU prints
    /// "no GPU: running the CPU path because &lt;reason&gt;" and returns false.</summary>
    /// <exception cref="CliRuntimeException"><c>--device gpu</c> (or a GPU-only feature) and no usable GPU.</exception>
    public static bool UseGpu(CliConsole console, DeviceChoice choice, string? gpuOnlyFeature = null)
    {
        if (choice == DeviceChoice.Cpu)
        {
            if (gpuOnlyFeature is not null) throw new CliUsageException($"{gpuOnlyFeature} runs on the GPU only; drop --device cpu");
            return false;
        }
        string? why = GpuReport.WhyNoGpu();
        if (why is null) return true;
        if (choice == DeviceChoice.Gpu || gpuOnlyFeature is not null)
        {
            throw new CliRuntimeException($"{gpuOnlyFeature ?? "--device gpu"} needs a GPU and none is usable: {GpuReport.Tidy(why)}");
        }
        console.WriteNote("no GPU: running the CPU path because " + GpuReport.Tidy(why));
        return false;
    }
}
