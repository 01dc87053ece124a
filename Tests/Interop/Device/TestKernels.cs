using System.Runtime.InteropServices;
using MoeNative.Interop;

namespace MoeNative.Tests.Interop.Device;

/// <summary>Hand-written PTX used by the interop GPU tests. Checked with
/// <c>ptxas -arch=sm_80 -v</c> and <c>-arch=sm_90</c> (no errors, no spills).</summary>
internal static class TestKernels
{
    public const string AffineEntry = "moenative_test_affine_f32";

    /// <summary>y[i] = fma(a, x[i], b) for i &lt; n (fp32), one thread per element, 1-D grid.</summary>
    public const string AffinePtx = """
        //
        // moenative_test_affine_f32: y[i] = a * x[i] + b (fused, round to nearest), i < n.
        //   x [n] f32 in, y [n] f32 out. One thread per element; the grid may overshoot n.
        // Check: ptxas -arch=sm_80 -v affine.ptx
        //
        .version 7.8
        .target sm_80
        .address_size 64

        .visible .entry moenative_test_affine_f32(
            .param .u64 param_x,      // [n] f32
            .param .u64 param_y,      // [n] f32 out
            .param .f32 param_a,
            .param .f32 param_b,
            .param .s32 param_n)
        {
            .reg .pred  p_out;                               // i >= n
            .reg .b32   r_tid, r_ctaid, r_ntid, r_i, r_n;    // thread / element index
            .reg .b64   rd_x, rd_y, rd_offset;               // global addresses
            .reg .f32   f_a, f_b, f_x, f_y;                  // values

            ld.param.u64    rd_x, [param_x];
            ld.param.u64    rd_y, [param_y];
            ld.param.f32    f_a, [param_a];
            ld.param.f32    f_b, [param_b];
            ld.param.s32    r_n, [param_n];

            mov.u32         r_tid, %tid.x;
            mov.u32         r_ctaid, %ctaid.x;
            mov.u32         r_ntid, %ntid.x;
            mad.lo.s32      r_i, r_ctaid, r_ntid, r_tid;     // i = blockIdx.x * blockDim.x + threadIdx.x
            setp.ge.s32     p_out, r_i, r_n;
            @p_out bra      DONE;

            cvta.to.global.u64 rd_x, rd_x;
            cvta.to.global.u64 rd_y, rd_y;
            mul.wide.s32    rd_offset, r_i, 4;               // 4 bytes per f32
            add.s64         rd_x, rd_x, rd_offset;
            add.s64         rd_y, rd_y, rd_offset;
            ld.global.f32   f_x, [rd_x];
            fma.rn.f32      f_y, f_a, f_x, f_b;
            st.global.f32   [rd_y], f_y;
        DONE:
            ret;
        }
        """;

    /// <summary>Line 10 uses an undeclared register: the JIT must reject it and say so in its log.</summary>
    public const string BrokenPtx = """
        .version 7.8
        .target sm_80
        .address_size 64

        .visible .entry moenative_test_broken(
            .param .u64 param_y)
        {
            .reg .b64 rd_y;
            ld.param.u64 rd_y, [param_y];
            st.global.f32 [rd_y], f_undeclared_register;
            ret;
        }
        """;

    public const string ClusterShapeEntry = "moenative_test_sm90_cluster_size";

    /// <summary>sm_90: thread 0 of every CTA writes %cluster_nctarank (CTAs in its cluster) to out[ctaid.x];
    /// 1 without a cluster launch. Proves that the cluster attribute of cuLaunchKernelEx arrives.</summary>
    public const string ClusterShapePtx = """
        //
        // moenative_test_sm90_cluster_size: out [gridDim.x] u32 = CTAs per cluster, written by thread 0 of each CTA.
        // Check: ptxas -arch=sm_90 -v cluster.ptx
        //
        .version 7.8
        .target sm_90
        .address_size 64

        .visible .entry moenative_test_sm90_cluster_size(
            .param .u64 param_out)    // [gridDim.x] u32 out
        {
            .reg .pred  p_not_leader;                        // threadIdx.x != 0
            .reg .b32   r_tid, r_ctaid, r_cluster_ctas;
            .reg .b64   rd_out, rd_offset;

            mov.u32         r_tid, %tid.x;
            setp.ne.u32     p_not_leader, r_tid, 0;
            @p_not_leader bra DONE;

            ld.param.u64    rd_out, [param_out];
            cvta.to.global.u64 rd_out, rd_out;
            mov.u32         r_ctaid, %ctaid.x;
            mov.u32         r_cluster_ctas, %cluster_nctarank;
            mul.wide.u32    rd_offset, r_ctaid, 4;           // 4 bytes per u32
            add.s64         rd_out, rd_out, rd_offset;
            st.global.u32   [rd_out], r_cluster_ctas;
        DONE:
            ret;
        }
        """;

    /// <summary>.params of <see cref="ClusterShapeEntry"/>.</summary>
    public const int ClusterShapeParameters = 1;

    /// <summary>.params of <see cref="AffineEntry"/>.</summary>
    public const int AffineParameters = 5;

    /// <summary>Arguments of <see cref="ClusterShapeEntry"/>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ClusterShapeArgs
    {
        public ulong Out; // .u64 param_out
    }

    /// <summary>Arguments of <see cref="AffineEntry"/>, in .param order.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct AffineArgs
    {
        public ulong X;   // .u64 param_x
        public ulong Y;   // .u64 param_y
        public float A;   // .f32 param_a
        public float B;   // .f32 param_b
        public int N;     // .s32 param_n
    }

    /// <summary>Too short for <see cref="AffineEntry"/>: the launch must be refused before reaching the driver.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct WrongArgs
    {
        public ulong X;
        public ulong Y;
    }

    public const uint BlockSize = 128;

    public static Dim3 GridFor(int n) => new((uint)((n + BlockSize - 1) / BlockSize));

    /// <summary>Launches y = a·x + b over n elements on <paramref name="stream"/>.</summary>
    public static void LaunchAffine(CudaKernel kernel, CudaStream stream, DeviceBuffer<float> x, DeviceBuffer<float> y, float a, float b, int n)
    {
        var args = new AffineArgs { X = x.DevicePointer, Y = y.DevicePointer, A = a, B = b, N = n };
        kernel.Launch(stream, GridFor(n), new Dim3(BlockSize), 0, in args);
    }
}
