using System.Runtime.InteropServices;
using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>Properties of one CUDA device, read without creating a context.</summary>
/// <param name="Ordinal">CUDA device ordinal.</param>
/// <param name="Name">e.g. "NVIDIA H100 80GB HBM3".</param>
/// <param name="ComputeCapability">(major, minor), e.g. (9, 0).</param>
/// <param name="MultiprocessorCount">Number of SMs.</param>
/// <param name="TotalMemoryBytes">Device memory.</param>
/// <param name="DriverVersion">1000*major + 10*minor of the driver's CUDA version, e.g. 13000.</param>
/// <param name="MaxSharedMemoryPerBlockOptin">Largest dynamic shared memory a kernel can opt in to, bytes.</param>
/// <param name="L2CacheBytes">L2 cache size.</param>
public sealed record GpuDeviceInfo(
    int Ordinal, string Name, (int Major, int Minor) ComputeCapability, int MultiprocessorCount,
    long TotalMemoryBytes, int DriverVersion, int MaxSharedMemoryPerBlockOptin, int L2CacheBytes)
{
    /// <summary>"sm_90" style name of the compute capability.</summary>
    public string SmName => $"sm_{ComputeCapability.Major}{ComputeCapability.Minor}";

    /// <summary>Driver version as "13.0".</summary>
    public string DriverVersionText => $"{DriverVersion / 1000}.{DriverVersion % 1000 / 10}";

    /// <summary>Initialises the driver (cuInit) and reads the device's properties.</summary>
    /// <exception cref="DllNotFoundException">No driver library (message lists what was tried).</exception>
    /// <exception cref="CudaException">cuInit or a query failed (no device, bad ordinal, ...).</exception>
    internal static unsafe GpuDeviceInfo Query(int ordinal)
    {
        NativeLibraries.Require(NativeLibraryKind.CudaDriver);
        CuDriver.cuInit(0).Check(nameof(CuDriver.cuInit));
        int count, device, driver;
        CuDriver.cuDriverGetVersion(&driver).Check(nameof(CuDriver.cuDriverGetVersion));
        CuDriver.cuDeviceGetCount(&count).Check(nameof(CuDriver.cuDeviceGetCount));
        if ((uint)ordinal >= (uint)count)
            throw new ArgumentOutOfRangeException(nameof(ordinal), ordinal, $"The driver reports {count} CUDA device(s).");
        CuDriver.cuDeviceGet(&device, ordinal).Check(nameof(CuDriver.cuDeviceGet));

        byte* name = stackalloc byte[256];
        CuDriver.cuDeviceGetName(name, 256, device).Check(nameof(CuDriver.cuDeviceGetName));
        nuint total;
        CuDriver.cuDeviceTotalMem(&total, device).Check(nameof(CuDriver.cuDeviceTotalMem));

        return new GpuDeviceInfo(
            ordinal,
            Marshal.PtrToStringUTF8((IntPtr)name) ?? "",
            (Attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
             Attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)),
            Attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
            (long)total,
            driver,
            Attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
            Attribute(device, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE));
    }

    internal static unsafe int Attribute(int device, CUdevice_attribute attribute)
    {
        int value;
        CuDriver.cuDeviceGetAttribute(&value, attribute, device).Check(nameof(CuDriver.cuDeviceGetAttribute), attribute.ToString());
        return value;
    }
}
