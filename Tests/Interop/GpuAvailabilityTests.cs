using System.Runtime.InteropServices;
using MoeNative.Interop;
using MoeNative.Interop.Native;

namespace MoeNative.Tests.Interop;

/// <summary><see cref="Gpu"/> never throws and explains itself. Meaningful on both kinds of machine: the
/// expectation is derived from whether the driver library loads, checked independently with NativeLibrary.</summary>
[TestClass]
public sealed class GpuAvailabilityTests
{
    private static bool DriverLibraryLoads()
    {
        foreach (string name in NativeLibraries.DefaultNames(NativeLibraryKind.CudaDriver))
        {
            if (NativeLibrary.TryLoad(name, out IntPtr h))
            {
                NativeLibrary.Free(h);
                return true;
            }
        }
        return false;
    }

    [TestMethod]
    public void IsAvailable_AgreesWithReason()
    {
        bool available = Gpu.IsAvailable;
        string? reason = Gpu.UnavailableReason;
        Assert.AreEqual(available, reason is null, $"IsAvailable={available}, reason={reason ?? "(null)"}");
        if (!available)
            Assert.IsFalse(string.IsNullOrWhiteSpace(reason));
    }

    [TestMethod]
    public void WithoutDriverLibrary_ReasonNamesLibcudaAndTheVariable()
    {
        if (DriverLibraryLoads() && Environment.GetEnvironmentVariable(NativeLibraries.CudaDriverVariable) is null)
        {
            // A machine with a driver: unavailability can only come from the driver itself, and says which call failed.
            if (!Gpu.IsAvailable)
                Assert.Contains("cu", Gpu.UnavailableReason!);
            return;
        }
        if (DriverLibraryLoads())
            Assert.Inconclusive("The driver loads, but MOENATIVE_CUDA_DRIVER is set: the outcome depends on it.");
        Assert.IsFalse(Gpu.IsAvailable);
        string reason = Gpu.UnavailableReason!;
        Assert.Contains(OperatingSystem.IsWindows() ? "nvcuda.dll" : "libcuda.so.1", reason);
        Assert.Contains("MOENATIVE_CUDA_DRIVER", reason);
    }

    [TestMethod]
    [DataRow(0)]
    [DataRow(-1)]
    [DataRow(1_000_000)]
    public void TryGetDevice_NeverThrows_AndReasonIsSetOnFailure(int ordinal)
    {
        bool ok = Gpu.TryGetDevice(ordinal, out GpuDeviceInfo? info, out string reason);
        Assert.AreEqual(ok, info is not null);
        if (ok)
        {
            Assert.AreEqual(ordinal, info!.Ordinal);
            Assert.AreEqual("", reason);
        }
        else
        {
            Assert.IsFalse(string.IsNullOrWhiteSpace(reason));
        }
        if (ordinal != 0)
            Assert.IsFalse(ok, "no machine has a device with this ordinal");
    }

    [TestMethod]
    public void CudaContextCreate_WithoutGpu_ThrowsTheDocumentedException()
    {
        if (Gpu.IsAvailable)
            Assert.Inconclusive("A GPU is available: CudaContext.Create succeeds here (covered by the GPU tests).");
        Exception e = Assert.Throws<Exception>(() => CudaContext.Create(0));
        Assert.IsTrue(e is DllNotFoundException or CudaException, $"unexpected {e.GetType().Name}: {e.Message}");
    }
}
