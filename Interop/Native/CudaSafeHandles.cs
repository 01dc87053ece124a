using System.Runtime.InteropServices;

namespace MoeNative.Interop.Native;

/// <summary>A retained primary context; releasing it calls <c>cuDevicePrimaryCtxRelease_v2</c>.
/// Child handles hold a reference (DangerousAddRef), so the context outlives everything created in it.</summary>
internal sealed class SafeCudaContextHandle : SafeHandle
{
    /// <param name="context">The CUcontext.</param>
    /// <param name="device">The CUdevice it belongs to.</param>
    /// <param name="retainedPrimary">True: a primary context this handle retained (released on release); false: a
    /// context another library created and keeps alive (nothing is released).</param>
    public SafeCudaContextHandle(IntPtr context, int device, bool retainedPrimary = true) : base(IntPtr.Zero, ownsHandle: true)
    {
        Device = device;
        RetainedPrimary = retainedPrimary;
        SetHandle(context);
    }

    /// <summary>CUdevice the context belongs to.</summary>
    public int Device { get; }

    /// <summary>False for a borrowed (non-primary) context.</summary>
    public bool RetainedPrimary { get; }

    public override bool IsInvalid => handle == IntPtr.Zero;
    protected override bool ReleaseHandle() => !RetainedPrimary || CuDriver.cuDevicePrimaryCtxRelease(Device) == CUresult.CUDA_SUCCESS;
}

/// <summary>
/// Base of the handles of objects that live in a context: keeps the context alive (AddRef at wrap, Release after
/// destroy) and makes it current on the releasing thread (finalizer threads included) before destroying.
/// </summary>
internal abstract class CudaChildHandle : SafeHandle
{
    private readonly SafeCudaContextHandle _context;

    protected CudaChildHandle(IntPtr value, SafeCudaContextHandle context) : base(IntPtr.Zero, ownsHandle: true)
    {
        bool added = false;
        context.DangerousAddRef(ref added);
        _context = context;
        SetHandle(value);
    }

    public override bool IsInvalid => handle == IntPtr.Zero;

    protected sealed override bool ReleaseHandle()
    {
        try
        {
            CuDriver.cuCtxSetCurrent(_context.DangerousGetHandle());
            return Destroy(handle);
        }
        finally
        {
            _context.DangerousRelease();
        }
    }

    /// <summary>Destroys the native object; the context is current. True on success.</summary>
    protected abstract bool Destroy(IntPtr value);
}

internal sealed class SafeCudaStreamHandle(IntPtr value, SafeCudaContextHandle context) : CudaChildHandle(value, context)
{
    protected override bool Destroy(IntPtr value) => CuDriver.cuStreamDestroy(value) == CUresult.CUDA_SUCCESS;
}

internal sealed class SafeCudaEventHandle(IntPtr value, SafeCudaContextHandle context) : CudaChildHandle(value, context)
{
    protected override bool Destroy(IntPtr value) => CuDriver.cuEventDestroy(value) == CUresult.CUDA_SUCCESS;
}

internal sealed class SafeCudaModuleHandle(IntPtr value, SafeCudaContextHandle context) : CudaChildHandle(value, context)
{
    protected override bool Destroy(IntPtr value) => CuDriver.cuModuleUnload(value) == CUresult.CUDA_SUCCESS;
}

internal sealed class SafeCudaGraphHandle(IntPtr value, SafeCudaContextHandle context) : CudaChildHandle(value, context)
{
    protected override bool Destroy(IntPtr value) => CuDriver.cuGraphDestroy(value) == CUresult.CUDA_SUCCESS;
}

internal sealed class SafeCudaGraphExecHandle(IntPtr value, SafeCudaContextHandle context) : CudaChildHandle(value, context)
{
    protected override bool Destroy(IntPtr value) => CuDriver.cuGraphExecDestroy(value) == CUresult.CUDA_SUCCESS;
}

/// <summary>A <c>cuMemAlloc_v2</c> allocation; the handle value is the CUdeviceptr.</summary>
internal sealed class SafeDeviceMemoryHandle(ulong devicePointer, SafeCudaContextHandle context)
    : CudaChildHandle((IntPtr)(long)devicePointer, context)
{
    public ulong DevicePointer => (ulong)(long)handle;
    protected override bool Destroy(IntPtr value) => CuDriver.cuMemFree((ulong)(long)value) == CUresult.CUDA_SUCCESS;
}

internal sealed class SafeCublasHandle(IntPtr value, SafeCudaContextHandle context) : CudaChildHandle(value, context)
{
    protected override bool Destroy(IntPtr value) => Cublas.cublasDestroy(value) == CublasStatus.Success;
}

/// <summary>A <c>cuMemHostAlloc</c> allocation (page-locked host memory); freed with <c>cuMemFreeHost</c>.</summary>
internal sealed unsafe class SafePinnedHostMemoryHandle(IntPtr pointer, SafeCudaContextHandle context) : CudaChildHandle(pointer, context)
{
    protected override bool Destroy(IntPtr value) => CuDriver.cuMemFreeHost((void*)value) == CUresult.CUDA_SUCCESS;
}
