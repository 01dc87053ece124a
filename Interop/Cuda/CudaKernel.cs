using System.Runtime.CompilerServices;
using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>
/// One <c>.entry</c> of a <see cref="CudaModule"/>. Launches are typed and allocation-free: the arguments are an
/// unmanaged <c>[StructLayout(LayoutKind.Sequential)]</c> struct whose fields, in order, are the entry's
/// <c>.param</c>s (ulong ↔ .u64 pointers, long ↔ .s64, int ↔ .s32, uint ↔ .u32, float ↔ .f32); it is passed as
/// one buffer through CU_LAUNCH_PARAM_BUFFER_POINTER/SIZE, so the natural C alignment of the struct is the
/// kernel's parameter layout. Launches are asynchronous on the given stream; nothing synchronises.
/// </summary>
public sealed class CudaKernel
{
    private readonly IntPtr _function;
    private long _paramBytes = -1; // kernel's parameter buffer size from cuFuncGetParamInfo; -2 = unknown

    internal CudaKernel(CudaModule module, IntPtr function, string name, int? parameterCount)
    {
        Module = module;
        _function = function;
        Name = name;
        ParameterCount = parameterCount;
    }

    /// <summary>The entry name.</summary>
    public string Name { get; }

    /// <summary>The number of <c>.param</c>s of the entry, as declared by whoever got the kernel (from the PTX
    /// signature); null when not declared: then the kernel cannot be launched (its attributes can be read).</summary>
    public int? ParameterCount { get; }
    public CudaModule Module { get; }
    public CudaContext Context => Module.Context;

    /// <summary>The CUfunction.</summary>
    /// <exception cref="ObjectDisposedException">The module was disposed.</exception>
    public IntPtr Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(Module.IsDisposed, Module);
            return _function;
        }
    }

    /// <summary>cuFuncGetAttribute.</summary>
    internal unsafe int GetAttribute(CUfunction_attribute attribute)
    {
        IntPtr f = Handle;
        Context.MakeCurrent();
        int value;
        CuDriver.cuFuncGetAttribute(&value, attribute, f).Check(nameof(CuDriver.cuFuncGetAttribute), $"{attribute} of '{Name}'");
        GC.KeepAlive(Module);
        return value;
    }

    /// <summary>Registers per thread (CU_FUNC_ATTRIBUTE_NUM_REGS).</summary>
    public int NumRegisters => GetAttribute(CUfunction_attribute.CU_FUNC_ATTRIBUTE_NUM_REGS);
    /// <summary>Local (spill) memory per thread in bytes (CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES).</summary>
    public int LocalBytesPerThread => GetAttribute(CUfunction_attribute.CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES);
    /// <summary>Largest block this kernel can launch with (CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK).</summary>
    public int MaxThreadsPerBlock => GetAttribute(CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK);

    /// <summary>
    /// CTAs of <paramref name="blockThreads"/> threads with <paramref name="dynamicSharedBytes"/> of dynamic shared
    /// memory that one SM holds at once for this kernel, as the driver's JIT allocated it (registers, static shared
    /// memory, the SM's thread, block and register limits): cuOccupancyMaxActiveBlocksPerMultiprocessor. 0 when one
    /// CTA does not fit. Ask once per loaded kernel and keep the answer: it does not change.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A block outside 1..1024 threads or negative shared memory.</exception>
    public unsafe int MaxActiveBlocksPerMultiprocessor(int blockThreads, int dynamicSharedBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockThreads, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(blockThreads, 1024);
        ArgumentOutOfRangeException.ThrowIfNegative(dynamicSharedBytes);
        IntPtr f = Handle;
        Context.MakeCurrent();
        int blocks;
        CuDriver.cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, f, blockThreads, (nuint)dynamicSharedBytes)
            .Check(nameof(CuDriver.cuOccupancyMaxActiveBlocksPerMultiprocessor), $"'{Name}' block {blockThreads} shared {dynamicSharedBytes}");
        GC.KeepAlive(Module);
        return blocks;
    }

    /// <summary>Allows launches with up to <paramref name="bytes"/> of dynamic shared memory
    /// (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES; required above 48 KiB).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative or above the device's opt-in limit.</exception>
    public void SetMaxDynamicSharedMemory(int bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        int limit = Context.MaxSharedMemoryPerBlockOptin;
        if (bytes > limit)
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, $"The device allows at most {limit} bytes of shared memory per block.");
        IntPtr f = Handle;
        Context.MakeCurrent();
        CuDriver.cuFuncSetAttribute(f, CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes)
            .Check(nameof(CuDriver.cuFuncSetAttribute), $"max dynamic shared memory {bytes} of '{Name}'");
        GC.KeepAlive(Module);
    }

    /// <summary>
    /// How many clusters of <paramref name="clusterX"/> CTAs (along x) of <paramref name="block"/> threads and
    /// <paramref name="dynamicSharedBytes"/> of dynamic shared memory the device runs at once
    /// (cuOccupancyMaxActiveClusters). A persistent grid larger than this many clusters runs its last clusters in a
    /// second wave: on a GPU whose clusters of 2 do not tile every SM this is less than half the SM count.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="clusterX"/> is 0, the block is empty or over
    /// 1024 threads, or the shared memory is negative.</exception>
    public unsafe int MaxActiveClusters(Dim3 block, int dynamicSharedBytes, uint clusterX)
    {
        ArgumentOutOfRangeException.ThrowIfZero(clusterX);
        if (block.X == 0 || block.Y == 0 || block.Z == 0 || block.Volume > 1024)
            throw new ArgumentOutOfRangeException(nameof(block), block, $"Block of '{Name}' must have 1..1024 threads.");
        ArgumentOutOfRangeException.ThrowIfNegative(dynamicSharedBytes);
        IntPtr f = Handle;
        CUlaunchAttribute attribute = default;
        attribute.Id = CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
        attribute.ClusterDimX = clusterX;
        attribute.ClusterDimY = 1;
        attribute.ClusterDimZ = 1;
        CUlaunchConfig config = default;
        config.GridDimX = clusterX; config.GridDimY = 1; config.GridDimZ = 1;
        config.BlockDimX = block.X; config.BlockDimY = block.Y; config.BlockDimZ = block.Z;
        config.SharedMemBytes = (uint)dynamicSharedBytes;
        config.Attrs = &attribute;
        config.NumAttrs = 1;
        Context.MakeCurrent();
        int clusters;
        CuDriver.cuOccupancyMaxActiveClusters(&clusters, f, &config)
            .Check(nameof(CuDriver.cuOccupancyMaxActiveClusters), $"'{Name}' block {block} shared {dynamicSharedBytes} cluster {clusterX}");
        GC.KeepAlive(Module);
        return clusters;
    }

    /// <summary>Launches on <paramref name="stream"/> (cuLaunchKernel). Allocation-free.</summary>
    /// <exception cref="ArgumentException">Zero grid/block dimension, negative shared memory, a stream of
    /// another context, or an args struct whose size does not match the entry's parameter list.</exception>
    /// <exception cref="CudaException">The launch was rejected (too many resources, ...). Errors during the
    /// kernel's execution surface later, at a synchronisation.</exception>
    public unsafe void Launch<TArgs>(CudaStream stream, Dim3 grid, Dim3 block, int dynamicSharedBytes, in TArgs args)
        where TArgs : unmanaged
    {
        nuint size = ValidateLaunch<TArgs>(stream, grid, block, dynamicSharedBytes);
        IntPtr f = _function, s = stream.Handle;
        TArgs copy = args;
        void** extra = stackalloc void*[5];
        extra[0] = CuDriver.CU_LAUNCH_PARAM_BUFFER_POINTER;
        extra[1] = &copy;
        extra[2] = CuDriver.CU_LAUNCH_PARAM_BUFFER_SIZE;
        extra[3] = &size;
        extra[4] = CuDriver.CU_LAUNCH_PARAM_END;
        Context.MakeCurrent();
        CUresult r = CuDriver.cuLaunchKernel(f, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z,
            (uint)dynamicSharedBytes, s, null, extra);
        if (r != CUresult.CUDA_SUCCESS)
            r.Check(nameof(CuDriver.cuLaunchKernel), $"'{Name}' grid {grid} block {block} shared {dynamicSharedBytes}");
        GC.KeepAlive(Module);
        GC.KeepAlive(stream);
    }

    /// <summary>Launches through cuLaunchKernelEx with <paramref name="attributes"/> (clusters, cooperative,
    /// programmatic stream serialisation). Same argument rules and failures as <see cref="Launch{TArgs}"/>.</summary>
    public unsafe void LaunchEx<TArgs>(CudaStream stream, Dim3 grid, Dim3 block, int dynamicSharedBytes, in TArgs args,
        in LaunchAttributes attributes) where TArgs : unmanaged
    {
        nuint size = ValidateLaunch<TArgs>(stream, grid, block, dynamicSharedBytes);
        Dim3 cluster = attributes.ClusterDim;
        bool hasCluster = cluster.X != 0 || cluster.Y != 0 || cluster.Z != 0;
        if (hasCluster && (cluster.X == 0 || cluster.Y == 0 || cluster.Z == 0))
            throw new ArgumentException($"Cluster dimensions {cluster} must all be positive (or all zero for none).", nameof(attributes));

        CUlaunchAttribute* attrs = stackalloc CUlaunchAttribute[3];
        uint count = 0;
        if (hasCluster)
        {
            attrs[count] = default;
            attrs[count].Id = CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
            attrs[count].ClusterDimX = cluster.X;
            attrs[count].ClusterDimY = cluster.Y;
            attrs[count].ClusterDimZ = cluster.Z;
            count++;
        }
        if (attributes.Cooperative)
        {
            attrs[count] = default;
            attrs[count].Id = CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_COOPERATIVE;
            attrs[count].IntValue = 1;
            count++;
        }
        if (attributes.ProgrammaticStreamSerialization)
        {
            attrs[count] = default;
            attrs[count].Id = CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
            attrs[count].IntValue = 1;
            count++;
        }

        CUlaunchConfig config = default;
        config.GridDimX = grid.X; config.GridDimY = grid.Y; config.GridDimZ = grid.Z;
        config.BlockDimX = block.X; config.BlockDimY = block.Y; config.BlockDimZ = block.Z;
        config.SharedMemBytes = (uint)dynamicSharedBytes;
        config.HStream = stream.Handle;
        config.Attrs = attrs;
        config.NumAttrs = count;

        TArgs copy = args;
        void** extra = stackalloc void*[5];
        extra[0] = CuDriver.CU_LAUNCH_PARAM_BUFFER_POINTER;
        extra[1] = &copy;
        extra[2] = CuDriver.CU_LAUNCH_PARAM_BUFFER_SIZE;
        extra[3] = &size;
        extra[4] = CuDriver.CU_LAUNCH_PARAM_END;
        Context.MakeCurrent();
        CUresult r = CuDriver.cuLaunchKernelEx(&config, _function, null, extra);
        if (r != CUresult.CUDA_SUCCESS)
            r.Check(nameof(CuDriver.cuLaunchKernelEx), $"'{Name}' grid {grid} block {block} shared {dynamicSharedBytes} cluster {cluster}");
        GC.KeepAlive(Module);
        GC.KeepAlive(stream);
    }

    /// <summary>Checks a launch's arguments; returns the parameter-buffer size to pass.</summary>
    private nuint ValidateLaunch<TArgs>(CudaStream stream, Dim3 grid, Dim3 block, int dynamicSharedBytes) where TArgs : unmanaged
    {
        ArgumentNullException.ThrowIfNull(stream);
        ObjectDisposedException.ThrowIf(Module.IsDisposed, Module);
        if (grid.X == 0 || grid.Y == 0 || grid.Z == 0)
            throw new ArgumentOutOfRangeException(nameof(grid), grid, $"Grid dimensions of '{Name}' must be positive.");
        if (block.X == 0 || block.Y == 0 || block.Z == 0 || block.Volume > 1024)
            throw new ArgumentOutOfRangeException(nameof(block), block, $"Block of '{Name}' must have 1..1024 threads.");
        ArgumentOutOfRangeException.ThrowIfNegative(dynamicSharedBytes);
        if (!Context.IsSameContext(stream.Context)) // NOTE: the owner text is built only on failure (launches allocate nothing)
            Context.EnsureSameContext(stream.Context, nameof(stream), $"kernel '{Name}'");

        int argsBytes = Unsafe.SizeOf<TArgs>();
        long paramBytes = ParamBytes();
        if (paramBytes < 0)
            return (nuint)argsBytes;
        // The struct may carry trailing padding up to its alignment (≤ 8) after the last parameter.
        if (argsBytes < paramBytes || argsBytes > ((paramBytes + 7) & ~7L))
            throw new ArgumentException(
                $"{typeof(TArgs).Name} is {argsBytes} bytes but the parameters of '{Name}' take {paramBytes} bytes: " +
                "the args struct does not match the .entry parameter list.", nameof(TArgs));
        return (nuint)paramBytes;
    }

    /// <summary>(offset, size) of each of the <see cref="ParameterCount"/> declared parameters in the launch buffer
    /// (cuFuncGetParamInfo, never past the last one), or null when no count was declared, the driver predates the
    /// query (CUDA &lt; 12.4) or it cannot answer for this function.</summary>
    public unsafe IReadOnlyList<(long Offset, long Size)>? ParameterLayout
    {
        get
        {
            if (ParameterCount is not { } count) return null;
            IntPtr f = Handle;
            var layout = new (long, long)[count];
            try
            {
                Context.MakeCurrent();
                for (int i = 0; i < count; i++)
                {
                    nuint offset, size;
                    if (CuDriver.cuFuncGetParamInfo(f, (nuint)i, &offset, &size) != CUresult.CUDA_SUCCESS) return null;
                    layout[i] = ((long)offset, (long)size);
                }
            }
            catch (EntryPointNotFoundException)
            {
                return null;
            }
            GC.KeepAlive(Module);
            return layout;
        }
    }

    /// <summary>Size of the kernel's parameter buffer: the end of its last declared parameter
    /// (<see cref="ParameterCount"/> − 1), from one cuFuncGetParamInfo call; -2 when the driver predates it (CUDA &lt; 12.4)
    /// or cannot answer for this function: then the struct size is passed unchecked.
    /// NOTE: the count is known, never probed: asking for the parameter past the last one is an API error that
    /// compute-sanitizer reports on every kernel (65 "errors" over 92 kernel tests), burying real findings.</summary>
    /// <exception cref="InvalidOperationException">No parameter count was declared.</exception>
    /// <exception cref="ArgumentException">The entry has fewer parameters than declared.</exception>
    private unsafe long ParamBytes()
    {
        long cached = _paramBytes;
        if (cached != -1)
            return cached;
        int count = ParameterCount ?? throw new InvalidOperationException(
            $"Kernel '{Name}' was got without its parameter count; launch kernels got with CudaModule.GetKernel(entry, parameterCount).");
        long end = 0;
        if (count > 0)
        {
            try
            {
                Context.MakeCurrent();
                nuint offset, size;
                CUresult r = CuDriver.cuFuncGetParamInfo(_function, (nuint)(count - 1), &offset, &size);
                if (r == CUresult.CUDA_ERROR_INVALID_VALUE)
                    throw new ArgumentException($"Kernel '{Name}' has fewer than the {count} parameters declared for it.", nameof(ParameterCount));
                end = r == CUresult.CUDA_SUCCESS ? (long)(offset + size) : -2;
            }
            catch (EntryPointNotFoundException)
            {
                end = -2;
            }
        }
        _paramBytes = end;
        return end;
    }
}
