using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

/// <summary>Element type of a tensor map (cuda.h <c>CUtensorMapDataType</c>), the ones MoeNative encodes.</summary>
public enum CUtensorMapDataType
{
    CU_TENSOR_MAP_DATA_TYPE_UINT8 = 0,
    CU_TENSOR_MAP_DATA_TYPE_UINT16 = 1,
    CU_TENSOR_MAP_DATA_TYPE_UINT32 = 2,
    CU_TENSOR_MAP_DATA_TYPE_INT32 = 3,
    CU_TENSOR_MAP_DATA_TYPE_FLOAT16 = 6,
    CU_TENSOR_MAP_DATA_TYPE_FLOAT32 = 7,
    CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 = 9,
}

/// <summary>cuda.h <c>CUtensorMapInterleave</c>.</summary>
public enum CUtensorMapInterleave
{
    CU_TENSOR_MAP_INTERLEAVE_NONE = 0,
    CU_TENSOR_MAP_INTERLEAVE_16B = 1,
    CU_TENSOR_MAP_INTERLEAVE_32B = 2,
}

/// <summary>cuda.h <c>CUtensorMapSwizzle</c>: the shared-memory swizzle a TMA load writes (the span is the
/// inner box extent's upper bound in bytes).</summary>
public enum CUtensorMapSwizzle
{
    CU_TENSOR_MAP_SWIZZLE_NONE = 0,
    CU_TENSOR_MAP_SWIZZLE_32B = 1,
    CU_TENSOR_MAP_SWIZZLE_64B = 2,
    CU_TENSOR_MAP_SWIZZLE_128B = 3,
}

/// <summary>cuda.h <c>CUtensorMapL2promotion</c>.</summary>
public enum CUtensorMapL2promotion
{
    CU_TENSOR_MAP_L2_PROMOTION_NONE = 0,
    CU_TENSOR_MAP_L2_PROMOTION_L2_64B = 1,
    CU_TENSOR_MAP_L2_PROMOTION_L2_128B = 2,
    CU_TENSOR_MAP_L2_PROMOTION_L2_256B = 3,
}

/// <summary>cuda.h <c>CUtensorMapFloatOOBfill</c>: NONE fills out-of-bounds elements with zeros.</summary>
public enum CUtensorMapFloatOOBfill
{
    CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE = 0,
    CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA = 1,
}

internal static unsafe partial class CuDriver
{
    /// <summary>Encodes a tiled TMA descriptor (CUDA 12.0+, host only, no context needed). <paramref name="globalDim"/>
    /// and <paramref name="boxDim"/>/<paramref name="elementStrides"/> hold <paramref name="tensorRank"/> entries (innermost
    /// first); <paramref name="globalStrides"/> holds rank - 1 byte strides (dimension 0 is contiguous).</summary>
    [LibraryImport(Lib, EntryPoint = "cuTensorMapEncodeTiled")]
    internal static partial CUresult cuTensorMapEncodeTiled(void* tensorMap, CUtensorMapDataType tensorDataType, uint tensorRank,
        void* globalAddress, ulong* globalDim, ulong* globalStrides, uint* boxDim, uint* elementStrides,
        CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2Promotion, CUtensorMapFloatOOBfill oobFill);
}
