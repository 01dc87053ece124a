using MoeNative.Interop.Native;

namespace MoeNative.Interop;

/// <summary>
/// The primary context of one device (the one the CUDA runtime and cuBLAS use), retained for the lifetime of this
/// object; native objects created in it keep it alive until they are released too. Device properties are read
/// once at creation. Thread-agnostic: every MoeNative wrapper calls <see cref="MakeCurrent"/> before its driver
/// calls, so any thread may use any object.
/// </summary>
public sealed class CudaContext : IDisposable
{
    private readonly SafeCudaContextHandle _handle;

    private CudaContext(SafeCudaContextHandle handle, GpuDeviceInfo info)
    {
        _handle = handle;
        Info = info;
    }

    /// <summary>Initialises the driver and retains the primary context of device <paramref name="ordinal"/>.</summary>
    /// <exception cref="DllNotFoundException">No driver library; the message lists every name and path tried.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="ordinal"/> is not a device.</exception>
    /// <exception cref="CudaException">cuInit, a query or the retain failed.</exception>
    public static unsafe CudaContext Create(int ordinal = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ordinal);
        GpuDeviceInfo info = GpuDeviceInfo.Query(ordinal);
        int device;
        CuDriver.cuDeviceGet(&device, ordinal).Check(nameof(CuDriver.cuDeviceGet));
        IntPtr ctx;
        CuDriver.cuDevicePrimaryCtxRetain(&ctx, device).Check(nameof(CuDriver.cuDevicePrimaryCtxRetain));
        var context = new CudaContext(new SafeCudaContextHandle(ctx, device), info);
        context.MakeCurrent();
        return context;
    }

    /// <summary>
    /// The context current on the calling thread, as other CUDA code (the CUDA runtime, TorchSharp, an engine) set it
    /// up. The primary context of its device is retained like <see cref="Create"/>; any other context is borrowed: its
    /// creator keeps it alive while MoeNative objects made in it are in use, and disposing this object releases nothing.
    /// </summary>
    /// <exception cref="InvalidOperationException">No context is current on this thread.</exception>
    /// <exception cref="CudaException">A driver query failed.</exception>
    public static unsafe CudaContext FromCurrent()
    {
        IntPtr current;
        CuDriver.cuCtxGetCurrent(&current).Check(nameof(CuDriver.cuCtxGetCurrent));
        if (current == IntPtr.Zero)
            throw new InvalidOperationException("No CUDA context is current on this thread: create one (or call cudaSetDevice / a first CUDA call) first, or use CudaContext.Create.");
        int device;
        CuDriver.cuCtxGetDevice(&device).Check(nameof(CuDriver.cuCtxGetDevice));
        GpuDeviceInfo info = GpuDeviceInfo.Query(device); // NOTE: a CUdevice is its ordinal (cuDeviceGet(&d, i) gives d == i)
        uint flags;
        int active;
        CuDriver.cuDevicePrimaryCtxGetState(device, &flags, &active).Check(nameof(CuDriver.cuDevicePrimaryCtxGetState));
        if (active != 0)
        {
            // NOTE: retaining an active primary context only counts a reference; an inactive one cannot be current.
            IntPtr primary;
            CuDriver.cuDevicePrimaryCtxRetain(&primary, device).Check(nameof(CuDriver.cuDevicePrimaryCtxRetain));
            if (primary == current) return new CudaContext(new SafeCudaContextHandle(current, device), info);
            CuDriver.cuDevicePrimaryCtxRelease(device).Check(nameof(CuDriver.cuDevicePrimaryCtxRelease));
        }
        return new CudaContext(new SafeCudaContextHandle(current, device, retainedPrimary: false), info);
    }

    public GpuDeviceInfo Info { get; }
    public int Ordinal => Info.Ordinal;
    public string Name => Info.Name;
    public (int Major, int Minor) ComputeCapability => Info.ComputeCapability;
    public int MultiprocessorCount => Info.MultiprocessorCount;
    public long TotalMemoryBytes => Info.TotalMemoryBytes;
    /// <summary>1000*major + 10*minor, e.g. 13000.</summary>
    public int DriverVersion => Info.DriverVersion;
    public int MaxSharedMemoryPerBlockOptin => Info.MaxSharedMemoryPerBlockOptin;
    public int L2CacheBytes => Info.L2CacheBytes;

    /// <summary>The CUcontext.</summary>
    /// <exception cref="ObjectDisposedException">Disposed.</exception>
    public IntPtr Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
            return _handle.DangerousGetHandle();
        }
    }

    internal SafeCudaContextHandle SafeHandle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
            return _handle;
        }
    }

    /// <summary>Makes this context current on the calling thread (cuCtxSetCurrent).</summary>
    /// <exception cref="ObjectDisposedException">Disposed.</exception>
    /// <exception cref="CudaException">The driver refused.</exception>
    public void MakeCurrent()
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        CuDriver.cuCtxSetCurrent(_handle.DangerousGetHandle()).Check(nameof(CuDriver.cuCtxSetCurrent));
    }

    /// <summary>Waits for all work in the context (cuCtxSynchronize); an asynchronous error of earlier work
    /// (illegal address, launch failure) surfaces here as a <see cref="CudaException"/>.</summary>
    public void Synchronize()
    {
        MakeCurrent();
        CuDriver.cuCtxSynchronize().Check(nameof(CuDriver.cuCtxSynchronize));
    }

    /// <summary>Free and total device memory in bytes (cuMemGetInfo_v2).</summary>
    public unsafe (long FreeBytes, long TotalBytes) GetMemoryInfo()
    {
        MakeCurrent();
        nuint free, total;
        CuDriver.cuMemGetInfo(&free, &total).Check(nameof(CuDriver.cuMemGetInfo));
        return ((long)free, (long)total);
    }

    /// <summary>Releases this reference to the primary context; objects still alive in it keep it retained.</summary>
    public void Dispose() => _handle.Dispose();

    /// <summary>
    /// The one context identity rule of MoeNative, used by every layer's checks (kernels, grouped GEMM, small kernels,
    /// blocks): an object made in a context (stream, buffer, module, kernel, block) is used only with objects of the
    /// same <see cref="CudaContext"/> object. A second object for the same device wraps the same primary context but
    /// has its own lifetime, module cache and kernel instances, so it counts as another context.
    /// </summary>
    public bool IsSameContext(CudaContext other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return ReferenceEquals(this, other);
    }

    /// <summary>Throws unless <paramref name="other"/> is this object (<see cref="IsSameContext"/>); call before any launch.</summary>
    /// <param name="other">The context of the argument being checked.</param>
    /// <param name="paramName">The argument (named in the exception).</param>
    /// <param name="owner">What this context belongs to, e.g. "these kernels", "the block".</param>
    /// <exception cref="ArgumentException"><paramref name="other"/> is another CudaContext object (on this device or another).</exception>
    public void EnsureSameContext(CudaContext other, string paramName, string owner)
    {
        ArgumentNullException.ThrowIfNull(other, paramName);
        if (ReferenceEquals(this, other)) return;
        string where = other.Ordinal == Ordinal
            ? $"a second CudaContext object of device {Ordinal}"
            : $"device {other.Ordinal}";
        throw new ArgumentException(
            $"{paramName} belongs to {where}, {owner} to the CudaContext object of device {Ordinal}: pass objects of one CudaContext object.",
            paramName);
    }

    public override string ToString() => $"{Name} (device {Ordinal}, {Info.SmName}, {MultiprocessorCount} SMs)";
}
