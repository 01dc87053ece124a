namespace MoeNative.Interop;

// NCCL enums with the values of nccl.h (NCCL 2.x; stable across 2.17 - 2.28).

/// <summary><c>ncclResult_t</c>.</summary>
public enum NcclResult
{
    Success = 0,
    UnhandledCudaError = 1,
    SystemError = 2,
    InternalError = 3,
    InvalidArgument = 4,
    InvalidUsage = 5,
    RemoteError = 6,
    /// <summary>A non-blocking communicator's call is still running: poll <c>ncclCommGetAsyncError</c>.</summary>
    InProgress = 7,
    Timeout = 8,
}

/// <summary><c>ncclDataType_t</c> (the ones MoeNative sends).</summary>
public enum NcclDataType
{
    Int8 = 0,
    UInt8 = 1,
    Int32 = 2,
    UInt32 = 3,
    Int64 = 4,
    UInt64 = 5,
    Float16 = 6,
    Float32 = 7,
    Float64 = 8,
    BFloat16 = 9,
}

/// <summary><c>ncclRedOp_t</c> (the built-in reductions).</summary>
public enum NcclReduceOp
{
    Sum = 0,
    Product = 1,
    Max = 2,
    Min = 3,
    Average = 4,
}
