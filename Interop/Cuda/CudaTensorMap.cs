using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>
/// A tiled TMA descriptor (<c>CUtensorMap</c>): 128 opaque bytes made on the host by <c>cuTensorMapEncodeTiled</c>
/// and passed BY VALUE to a kernel as <c>.param .align 64 .b8 name[128]</c>.
/// <para>NOTE (seen in the cubin's EIATTR_KPARAM_INFO and on an H200 through cuFuncGetParamInfo): sm_90 kernels keep
/// their parameters in constant bank 0 from byte <see cref="KernelParamBase"/> = 0x210, and the 64-byte alignment is of
/// that absolute address, so a first <c>.align 64</c> parameter sits at buffer offset 48, not 0. A launch-args struct
/// therefore starts with a <see cref="CudaParamGap48"/> and then the map; <c>PtxSignature.FromArgs</c> checks that a
/// map's offset plus 0x210 is a multiple of 64, and <c>PtxModuleCache.GetKernel</c> checks every field offset against
/// the driver's own parameter offsets before the first launch.</para>
/// <para>Every rule of the driver is checked before the encode, with an <see cref="ArgumentException"/> naming the
/// parameter (see <see cref="Validate"/>), so a bad map never reaches a kernel. Element strides are 1, no interleave,
/// out-of-bounds elements read as zeros (the kernels rely on that for N/K tails).</para>
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = SizeInBytes)]
public struct CudaTensorMap : IEquatable<CudaTensorMap>
{
    /// <summary>Bytes of a CUtensorMap.</summary>
    public const int SizeInBytes = 128;

    /// <summary>Alignment the kernel parameter (and the driver's CUtensorMap) needs.</summary>
    public const int Alignment = 64;

    /// <summary>Constant-bank offset of an sm_90 kernel's first parameter (EIATTR_PARAM_CBANK 0x210).</summary>
    public const int KernelParamBase = 0x210;

    /// <summary>Whether a map at launch-buffer offset <paramref name="offset"/> lands on a 64-byte aligned parameter.</summary>
    public static bool IsParamOffsetAligned(long offset) => (offset + KernelParamBase) % Alignment == 0;

    /// <summary>Most dimensions of a tiled map.</summary>
    public const int MaxRank = 5;

    /// <summary>Largest box extent along one dimension.</summary>
    public const int MaxBoxDim = 256;

    /// <summary>Global address alignment the driver requires without interleave (cuTensorMapEncodeTiled: 16 bytes).</summary>
    public const int GlobalAddressAlignment = 16;

    /// <summary>Global strides (and the inner box extent in bytes) must be multiples of this.</summary>
    public const int StrideAlignment = 16;

    [InlineArray(SizeInBytes / 8)]
    private struct Words { private ulong _w0; }

    private Words _words;

    /// <summary>Word <paramref name="i"/> (0..15) of the opaque encoding (diagnostics and tests).</summary>
    public readonly ulong Word(int i) => _words[i];

    /// <summary>Bytes per element of <paramref name="type"/>.</summary>
    public static int ElementBytes(CUtensorMapDataType type) => type switch
    {
        CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_UINT8 => 1,
        CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_UINT16 or CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_FLOAT16
            or CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 => 2,
        CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_UINT32 or CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_INT32
            or CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_FLOAT32 => 4,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unsupported tensor-map element type."),
    };

    /// <summary>The tensor-map element type of a storage dtype.</summary>
    public static CUtensorMapDataType DataTypeOf(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
        ScalarType.Float16 => CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
        ScalarType.Float32 => CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_FLOAT32,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Expected Float32, Float16 or BFloat16."),
    };

    /// <summary>Bytes of one swizzle span (the largest inner box extent in bytes), or 0 for no swizzle.</summary>
    public static int SwizzleSpan(CUtensorMapSwizzle swizzle) => swizzle switch
    {
        CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_NONE => 0,
        CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_32B => 32,
        CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_64B => 64,
        CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B => 128,
        _ => throw new ArgumentOutOfRangeException(nameof(swizzle), swizzle, "Unknown swizzle."),
    };

    /// <summary>
    /// Checks a tiled map against the driver's rules; throws <see cref="ArgumentException"/> (or
    /// <see cref="ArgumentOutOfRangeException"/>) naming the parameter and what was expected.
    /// </summary>
    /// <param name="type">Element type.</param>
    /// <param name="globalAddress">Device address of element (0, ..., 0): non-zero, 16-byte aligned.</param>
    /// <param name="globalDims">Extent of each dimension, innermost first: 1..2^32 each, rank 1..5.</param>
    /// <param name="globalStrideBytes">Byte stride of dimensions 1..rank-1 (rank - 1 entries): multiples of 16, below 2^40,
    /// each at least the extent of the dimension below it.</param>
    /// <param name="boxDims">Box (tile) extent per dimension: 1..256; the inner extent in bytes a multiple of 16 and,
    /// with a swizzle, at most the swizzle span.</param>
    /// <param name="swizzle">Shared-memory swizzle the load writes.</param>
    public static void Validate(CUtensorMapDataType type, ulong globalAddress, ReadOnlySpan<long> globalDims,
        ReadOnlySpan<long> globalStrideBytes, ReadOnlySpan<int> boxDims, CUtensorMapSwizzle swizzle)
    {
        int es = ElementBytes(type);
        int span = SwizzleSpan(swizzle);
        int rank = globalDims.Length;
        if (rank is < 1 or > MaxRank)
            throw new ArgumentException($"A tiled tensor map has 1..{MaxRank} dimensions; got {rank}.", nameof(globalDims));
        if (globalStrideBytes.Length != rank - 1)
            throw new ArgumentException($"globalStrideBytes needs rank - 1 = {rank - 1} entries (dimension 0 is contiguous); got {globalStrideBytes.Length}.", nameof(globalStrideBytes));
        if (boxDims.Length != rank)
            throw new ArgumentException($"boxDims needs one entry per dimension ({rank}); got {boxDims.Length}.", nameof(boxDims));
        if (globalAddress == 0)
            throw new ArgumentException("The global address is a null device pointer.", nameof(globalAddress));
        if (globalAddress % GlobalAddressAlignment != 0)
            throw new ArgumentException($"The global address 0x{globalAddress:x} must be {GlobalAddressAlignment}-byte aligned.", nameof(globalAddress));
        for (int d = 0; d < rank; d++)
        {
            if (globalDims[d] is < 1 or > 1L << 32)
                throw new ArgumentOutOfRangeException(nameof(globalDims), globalDims[d], $"globalDims[{d}] must be in 1..2^32.");
            if (boxDims[d] is < 1 or > MaxBoxDim)
                throw new ArgumentOutOfRangeException(nameof(boxDims), boxDims[d], $"boxDims[{d}] must be in 1..{MaxBoxDim}.");
        }
        long below = globalDims[0] * es; // bytes spanned by dimension 0
        for (int d = 1; d < rank; d++)
        {
            long s = globalStrideBytes[d - 1];
            if (s <= 0 || s % StrideAlignment != 0 || s >= 1L << 40)
                throw new ArgumentException($"globalStrideBytes[{d - 1}] (dimension {d}) = {s} must be a positive multiple of {StrideAlignment} below 2^40.", nameof(globalStrideBytes));
            if (s < below)
                throw new ArgumentException($"globalStrideBytes[{d - 1}] (dimension {d}) = {s} is smaller than the {below} bytes the dimensions below it span (rows would overlap).", nameof(globalStrideBytes));
            below = s * globalDims[d];
        }
        long innerBytes = (long)boxDims[0] * es;
        if (innerBytes % StrideAlignment != 0)
            throw new ArgumentException($"The inner box extent boxDims[0] * {es} B = {innerBytes} B must be a multiple of {StrideAlignment} bytes.", nameof(boxDims));
        if (span > 0 && innerBytes > span)
            throw new ArgumentException($"The inner box extent boxDims[0] * {es} B = {innerBytes} B exceeds the {span}-byte swizzle span of {swizzle}.", nameof(boxDims));
    }

    /// <summary>
    /// <see cref="Validate"/>, then <c>cuTensorMapEncodeTiled</c> (element strides 1, no interleave, out-of-bounds
    /// elements zero). Host only: no context, no synchronisation, no allocation.
    /// </summary>
    /// <exception cref="CudaException">The driver rejected the map (a rule not checked here).</exception>
    public static unsafe CudaTensorMap EncodeTiled(CUtensorMapDataType type, ulong globalAddress, ReadOnlySpan<long> globalDims,
        ReadOnlySpan<long> globalStrideBytes, ReadOnlySpan<int> boxDims, CUtensorMapSwizzle swizzle,
        CUtensorMapL2promotion l2Promotion = CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B)
    {
        Validate(type, globalAddress, globalDims, globalStrideBytes, boxDims, swizzle);
        int rank = globalDims.Length;
        ulong* dims = stackalloc ulong[MaxRank];
        ulong* strides = stackalloc ulong[MaxRank];
        uint* box = stackalloc uint[MaxRank];
        uint* elementStrides = stackalloc uint[MaxRank];
        for (int d = 0; d < rank; d++)
        {
            dims[d] = (ulong)globalDims[d];
            box[d] = (uint)boxDims[d];
            elementStrides[d] = 1;
            if (d > 0) strides[d - 1] = (ulong)globalStrideBytes[d - 1];
        }
        // NOTE: the driver writes 128 bytes through a CUtensorMap* that cuda.h declares 64-byte aligned: encode
        // into an aligned scratch on the stack, then copy into the (8-byte aligned) managed struct.
        byte* scratch = stackalloc byte[SizeInBytes + Alignment];
        byte* aligned = (byte*)(((nuint)scratch + (nuint)(Alignment - 1)) & ~(nuint)(Alignment - 1));
        CUresult r = CuDriver.cuTensorMapEncodeTiled(aligned, type, (uint)rank, (void*)globalAddress, dims, strides, box, elementStrides,
            CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, l2Promotion, CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
        if (r != CUresult.CUDA_SUCCESS) // the message is built only on failure: a launch encodes its map allocation-free
            r.Check(nameof(CuDriver.cuTensorMapEncodeTiled), $"{type} rank {rank} at 0x{globalAddress:x}");
        return Unsafe.ReadUnaligned<CudaTensorMap>(aligned);
    }

    public readonly bool Equals(CudaTensorMap other)
    {
        for (int i = 0; i < SizeInBytes / 8; i++)
            if (_words[i] != other._words[i]) return false;
        return true;
    }

    public override readonly bool Equals(object? obj) => obj is CudaTensorMap m && Equals(m);

    public override readonly int GetHashCode()
    {
        var h = new HashCode();
        for (int i = 0; i < SizeInBytes / 8; i++) h.Add(_words[i]);
        return h.ToHashCode();
    }

    public static bool operator ==(CudaTensorMap a, CudaTensorMap b) => a.Equals(b);
    public static bool operator !=(CudaTensorMap a, CudaTensorMap b) => !a.Equals(b);
}

/// <summary>48 unused bytes at the start of a launch-args struct whose first parameter is a <see cref="CudaTensorMap"/>
/// (see its NOTE: the map's parameter starts at buffer offset 48 on sm_90). Not a kernel parameter: PtxSignature skips it.</summary>
[InlineArray(48)]
public struct CudaParamGap48
{
    private byte _b0;
}
