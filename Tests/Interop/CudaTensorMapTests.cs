using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MoeNative.Interop;
using MoeNative.Interop.Native;
using MoeNative.Ptx;

namespace MoeNative.Tests.Interop;

/// <summary>CudaTensorMap's checks before cuTensorMapEncodeTiled (no GPU: every case throws before the driver call),
/// its layout (128 bytes), the enum values of cuda.h, and its PTX parameter mapping.</summary>
[TestClass]
public sealed class CudaTensorMapTests
{
    private const CUtensorMapDataType Bf16 = CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
    private const CUtensorMapSwizzle Sw128 = CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B;
    private const ulong Base = 0x7f0000000000;

    // W [E=4, N=200, K=72] bf16 as (K, N, E), box (64, 128, 1): the grouped GEMM's weight map
    private static readonly long[] Dims = [72, 200, 4];
    private static readonly long[] Strides = [72 * 2, 200 * 72 * 2];
    private static readonly int[] Box = [64, 128, 1];

    [TestMethod]
    public void Layout_Is128Bytes() => Assert.AreEqual(128, Unsafe.SizeOf<CudaTensorMap>());

    [TestMethod]
    [DataRow("CU_TENSOR_MAP_DATA_TYPE_FLOAT16", 6)]
    [DataRow("CU_TENSOR_MAP_DATA_TYPE_FLOAT32", 7)]
    [DataRow("CU_TENSOR_MAP_DATA_TYPE_BFLOAT16", 9)]
    public void DataTypes_MatchCudaH(string name, int value) => Assert.AreEqual(value, (int)Enum.Parse<CUtensorMapDataType>(name));

    [TestMethod]
    public void OtherEnums_MatchCudaH()
    {
        Assert.AreEqual(3, (int)CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B);
        Assert.AreEqual(2, (int)CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_64B);
        Assert.AreEqual(0, (int)CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE);
        Assert.AreEqual(3, (int)CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
        Assert.AreEqual(0, (int)CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    }

    [TestMethod]
    public void Validate_AcceptsTheWeightMap() => CudaTensorMap.Validate(Bf16, Base, Dims, Strides, Box, Sw128);

    [TestMethod]
    public void Validate_RejectsNullAndMisalignedAddresses()
    {
        Expect("globalAddress", "null", () => CudaTensorMap.Validate(Bf16, 0, Dims, Strides, Box, Sw128));
        Expect("globalAddress", "16-byte aligned", () => CudaTensorMap.Validate(Bf16, Base + 8, Dims, Strides, Box, Sw128));
    }

    [TestMethod]
    public void Validate_RejectsStridesNotMultiplesOf16()
    {
        // K = 36 bf16: a row is 72 bytes, not a multiple of 16
        Expect("globalStrideBytes", "multiple of 16", () => CudaTensorMap.Validate(Bf16, Base, [36, 200, 4], [72, 200 * 72], Box, Sw128));
    }

    [TestMethod]
    public void Validate_RejectsOverlappingStrides() =>
        Expect("globalStrideBytes", "smaller than", () => CudaTensorMap.Validate(Bf16, Base, Dims, [128, 200 * 72 * 2], Box, Sw128));

    [TestMethod]
    public void Validate_RejectsBoxesOver256() =>
        Expect("boxDims", "1..256", () => CudaTensorMap.Validate(Bf16, Base, Dims, Strides, [64, 257, 1], Sw128));

    [TestMethod]
    public void Validate_RejectsInnerBoxWiderThanTheSwizzleSpan()
    {
        Expect("boxDims", "128-byte swizzle span", () => CudaTensorMap.Validate(Bf16, Base, Dims, Strides, [72, 128, 1], Sw128));
        Expect("boxDims", "64-byte swizzle span",
            () => CudaTensorMap.Validate(Bf16, Base, Dims, Strides, [64, 128, 1], CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_64B));
        CudaTensorMap.Validate(Bf16, Base, Dims, Strides, [72, 128, 1], CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_NONE);
    }

    [TestMethod]
    public void Validate_RejectsInnerBoxNotMultipleOf16Bytes() =>
        Expect("boxDims", "multiple of 16", () => CudaTensorMap.Validate(Bf16, Base, Dims, Strides, [4, 128, 1], Sw128));

    [TestMethod]
    public void Validate_RejectsBadRanksAndCounts()
    {
        Expect("globalDims", "1..5", () => CudaTensorMap.Validate(Bf16, Base, [8, 8, 8, 8, 8, 8], [16, 128, 1024, 8192, 65536], [8, 8, 8, 8, 8, 8], Sw128));
        Expect("globalStrideBytes", "rank - 1", () => CudaTensorMap.Validate(Bf16, Base, Dims, [144], Box, Sw128));
        Expect("boxDims", "one entry per dimension", () => CudaTensorMap.Validate(Bf16, Base, Dims, Strides, [64, 128], Sw128));
        Expect("globalDims", "1..2^32", () => CudaTensorMap.Validate(Bf16, Base, [72, 0, 4], Strides, Box, Sw128));
    }

    [TestMethod]
    public void EncodeTiled_ValidatesBeforeTheDriver() =>
        // no libcuda needed: the check throws first
        Expect("boxDims", "1..256", () => CudaTensorMap.EncodeTiled(Bf16, Base, Dims, Strides, [64, 300, 1], Sw128));

    [StructLayout(LayoutKind.Sequential)]
    private struct MapFirstArgs
    {
        public CudaParamGap48 Gap;
        public CudaTensorMap Map;
        public ulong Pointer;
        public int Count;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MapMisplacedArgs
    {
        public CudaTensorMap Map; // at 0: 0x210 + 0 is not a multiple of 64 on sm_90
        public ulong Pointer;
    }

    [TestMethod]
    public void PtxSignature_MapsATensorMapToAnAligned128ByteParam()
    {
        const string ptx = ".visible .entry k(\n .param .align 64 .b8 p_map[128], // W\n .param .u64 p_ptr,\n .param .s32 p_count\n)\n{ ret; }";
        PtxSignature parsed = PtxSignature.Parse(ptx, "k");
        Assert.AreEqual(".align 64 .b8[128]", parsed.Parameters[0].Type);
        Assert.AreEqual("p_map", parsed.Parameters[0].Name);
        PtxSignature fromArgs = PtxSignature.FromArgs(typeof(MapFirstArgs));
        Assert.IsTrue(parsed.TypesMatch(fromArgs), parsed.DescribeMismatch(fromArgs));

        const string wrongAlign = ".visible .entry k(.param .align 8 .b8 p_map[128], .param .u64 p_ptr, .param .s32 p_count) { ret; }";
        Assert.IsFalse(PtxSignature.Parse(wrongAlign, "k").TypesMatch(fromArgs));
    }

    [TestMethod]
    public void PtxSignature_RejectsAMisalignedTensorMapField() =>
        Expect("argsType", "multiple of 64", () => PtxSignature.FromArgs(typeof(MapMisplacedArgs)));

    [TestMethod]
    public void ParamGap_Is48Bytes_AndPutsTheMapOnTheSm90Alignment()
    {
        Assert.AreEqual(48, Unsafe.SizeOf<CudaParamGap48>());
        Assert.AreEqual(48L, Marshal.OffsetOf<MapFirstArgs>(nameof(MapFirstArgs.Map)).ToInt64());
        Assert.IsTrue(CudaTensorMap.IsParamOffsetAligned(48));
        Assert.IsFalse(CudaTensorMap.IsParamOffsetAligned(0));
        Assert.AreEqual(2, PtxSignature.ParameterFields(typeof(MapFirstArgs)).Length - 1, "the gap is not a parameter");
    }

    private static void Expect(string param, string text, Action action)
    {
        ArgumentException e = Assert.Throws<ArgumentException>(action);
        Assert.AreEqual(param, e.ParamName, e.Message);
        StringAssert.Contains(e.Message, text);
    }
}
