namespace MoeNative.Interop;

/// <summary>Extra launch attributes for <see cref="CudaKernel.LaunchEx{TArgs}"/> (cuLaunchKernelEx).</summary>
/// <param name="ClusterDim">Thread-block cluster shape (sm_90+); default (0,0,0) = no cluster attribute.</param>
/// <param name="Cooperative">CU_LAUNCH_ATTRIBUTE_COOPERATIVE (grid-wide sync allowed; grid must fit co-resident).</param>
/// <param name="ProgrammaticStreamSerialization">CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
/// (programmatic dependent launch, sm_90+).</param>
public readonly record struct LaunchAttributes(Dim3 ClusterDim = default, bool Cooperative = false, bool ProgrammaticStreamSerialization = false);
