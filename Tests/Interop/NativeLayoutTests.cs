using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MoeNative.Interop;
using MoeNative.Interop.Native;

namespace MoeNative.Tests.Interop;

/// <summary>Struct layouts and enum values that must match cuda.h / cublas_api.h (64-bit). Expected numbers are
/// written from the headers, not derived from the code.</summary>
[TestClass]
public sealed class NativeLayoutTests
{
    [TestMethod]
    public void CUlaunchConfig_MatchesCudaH()
    {
        Assert.AreEqual(56, Unsafe.SizeOf<CUlaunchConfig>());
        Assert.AreEqual(24, (int)Marshal.OffsetOf<CUlaunchConfig>(nameof(CUlaunchConfig.SharedMemBytes)));
        Assert.AreEqual(32, (int)Marshal.OffsetOf<CUlaunchConfig>(nameof(CUlaunchConfig.HStream)));
        Assert.AreEqual(40, (int)Marshal.OffsetOf<CUlaunchConfig>(nameof(CUlaunchConfig.Attrs)));
        Assert.AreEqual(48, (int)Marshal.OffsetOf<CUlaunchConfig>(nameof(CUlaunchConfig.NumAttrs)));
    }

    [TestMethod]
    public void CUlaunchAttribute_MatchesCudaH()
    {
        Assert.AreEqual(72, Unsafe.SizeOf<CUlaunchAttribute>()); // id (4) + pad (4) + 64-byte value union
        Assert.AreEqual(8, (int)Marshal.OffsetOf<CUlaunchAttribute>(nameof(CUlaunchAttribute.ClusterDimX)));
        Assert.AreEqual(8, (int)Marshal.OffsetOf<CUlaunchAttribute>(nameof(CUlaunchAttribute.IntValue)));
        Assert.AreEqual(16, (int)Marshal.OffsetOf<CUlaunchAttribute>(nameof(CUlaunchAttribute.ClusterDimZ)));
    }

    [TestMethod]
    [DataRow("CU_JIT_INFO_LOG_BUFFER", 3)]
    [DataRow("CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES", 4)]
    [DataRow("CU_JIT_ERROR_LOG_BUFFER", 5)]
    [DataRow("CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES", 6)]
    [DataRow("CU_JIT_LOG_VERBOSE", 12)]
    public void JitOptions_MatchCudaH(string name, int value) =>
        Assert.AreEqual(value, (int)Enum.Parse<CUjit_option>(name));

    [TestMethod]
    [DataRow("CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT", 16)]
    [DataRow("CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE", 38)]
    [DataRow("CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR", 75)]
    [DataRow("CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR", 76)]
    [DataRow("CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN", 97)]
    public void DeviceAttributes_MatchCudaH(string name, int value) =>
        Assert.AreEqual(value, (int)Enum.Parse<CUdevice_attribute>(name));

    [TestMethod]
    [DataRow("Compute32F", 68)]
    [DataRow("Compute32FFastTF32", 77)]
    [DataRow("Compute16F", 64)]
    [DataRow("Compute64F", 70)]
    public void CublasComputeTypes_MatchCublasApiH(string name, int value) =>
        Assert.AreEqual(value, (int)Enum.Parse<CublasComputeType>(name));

    [TestMethod]
    [DataRow(ScalarType.Float32, 0)]   // CUDA_R_32F
    [DataRow(ScalarType.Float16, 2)]   // CUDA_R_16F
    [DataRow(ScalarType.BFloat16, 14)] // CUDA_R_16BF
    public void ScalarTypes_MapToLibraryTypesH(ScalarType type, int value) =>
        Assert.AreEqual(value, (int)type.ToCudaDataType());
}
