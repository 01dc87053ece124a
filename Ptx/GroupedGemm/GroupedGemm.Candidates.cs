using MoeNative.Interop;

namespace MoeNative.Ptx;

/// <summary>The configurations autotuning may time, per layout, dtype and device path.</summary>
public sealed partial class GroupedGemm
{
    /// <summary>The configurations autotuning may time for (layout, dtype) on <paramref name="context"/>'s device
    /// (with the sm_90a tiles on a 9.0 device unless MOENATIVE_FORCE_SM80=1).</summary>
    public static IReadOnlyList<GemmConfig> Candidates(GroupedGemmLayout layout, ScalarType dtype, CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return Candidates(layout, dtype, context.ComputeCapability, Sm90aAvailable(context.ComputeCapability) && !ForcedSm80ByEnvironment);
    }

    /// <summary>The configurations autotuning may time for (layout, dtype) on this instance's device and path.</summary>
    public IReadOnlyList<GemmConfig> Candidates(GroupedGemmLayout layout, ScalarType dtype) =>
        Candidates(layout, dtype, Context.ComputeCapability, UsesSm90a);

    /// <summary>The sm_80 candidates, then the sm_90a ones when <paramref name="sm90a"/> (a 9.0 device only).</summary>
    public static IReadOnlyList<GemmConfig> Candidates(GroupedGemmLayout layout, ScalarType dtype, (int Major, int Minor) computeCapability, bool sm90a)
    {
        IReadOnlyList<GemmConfig> common = Candidates(layout, dtype, computeCapability);
        IReadOnlyList<GemmConfig> hopper = sm90a && Sm90aAvailable(computeCapability) ? GroupedGemmSm90aSpecs.Candidates(layout, dtype) : [];
        return hopper.Count == 0 ? common : [.. common, .. hopper];
    }

    /// <summary>The configurations autotuning may time for (layout, dtype) on a device of compute capability <paramref name="computeCapability"/>.</summary>
    /// <exception cref="NotSupportedException">The device is older than sm_80.</exception>
    public static IReadOnlyList<GemmConfig> Candidates(GroupedGemmLayout layout, ScalarType dtype, (int Major, int Minor) computeCapability)
    {
        GroupedGemmSpecs.Tag(layout); // validates the layout
        CheckArchitecture(computeCapability);
        return GroupedGemmSpecs.CandidateConfigs(layout, dtype);
    }

    /// <summary>The configurations of <see cref="BackwardWeightTNFloat32"/> autotuning may time for <paramref name="dtype"/>
    /// on this instance's device and path: the TN tensor-core tiles whose f32 epilogue fits (sm_80, then sm_90a).</summary>
    public IReadOnlyList<GemmConfig> Float32OutputCandidates(ScalarType dtype)
    {
        CheckArchitecture(Context.ComputeCapability);
        return GroupedGemmSpecs.Float32OutputCandidates(GroupedGemmLayout.BackwardWeightTN, dtype, UsesSm90a);
    }
}
