using System.Runtime.InteropServices;
using MoeNative.Interop;
using MoeNative.Interop.Native;

namespace MoeNative.Tests.Interop;

/// <summary>The NCCL binding on the CPU: argument checks before any native call, the native struct layouts against
/// nccl.h, the exception text, the library probe and its not-found message.</summary>
[TestClass]
public sealed class NcclArgumentTests
{
    private static readonly DeviceRange Buffer1K = new(0x10000, 1024);

    [TestMethod]
    public void Transfer_BadArguments_NameTheParameter()
    {
        Assert.AreEqual("count", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            NcclChecks.Transfer(Buffer1K, -1, NcclDataType.Float32, 0, 2, "buffer")).ParamName);
        var peer = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => NcclChecks.Transfer(Buffer1K, 4, NcclDataType.Float32, 2, 2, "buffer"));
        Assert.AreEqual("peer", peer.ParamName);
        Assert.Contains("[0, 2)", peer.Message);
        Assert.AreEqual("peer", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            NcclChecks.Transfer(Buffer1K, 4, NcclDataType.Float32, -1, 2, "buffer")).ParamName);
        var isNull = Assert.ThrowsExactly<ArgumentException>(() => NcclChecks.Transfer(DeviceRange.Null, 4, NcclDataType.BFloat16, 0, 1, "buffer"));
        Assert.AreEqual("buffer", isNull.ParamName);
        var shortBuffer = Assert.ThrowsExactly<ArgumentException>(() => NcclChecks.Transfer(Buffer1K, 257, NcclDataType.Float32, 0, 1, "buffer"));
        Assert.Contains("too short", shortBuffer.Message);
        Assert.AreEqual("type", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            NcclChecks.Transfer(Buffer1K, 1, (NcclDataType)42, 0, 1, "buffer")).ParamName);
        NcclChecks.Transfer(Buffer1K, 256, NcclDataType.Float32, 1, 2, "buffer"); // exactly fits
        NcclChecks.Transfer(DeviceRange.Null, 0, NcclDataType.Float32, 0, 1, "buffer"); // nothing to move
        NcclChecks.Transfer(new DeviceRange(0x10000, DeviceRange.UnknownSize), 1L << 40, NcclDataType.Int8, 0, 1, "buffer"); // unknown size: trusted
    }

    [TestMethod]
    public void AllReduce_BadArguments_NameTheParameter()
    {
        Assert.AreEqual("op", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            NcclChecks.AllReduce(Buffer1K, Buffer1K, 4, NcclDataType.Float32, (NcclReduceOp)9)).ParamName);
        Assert.AreEqual("receive", Assert.ThrowsExactly<ArgumentException>(() =>
            NcclChecks.AllReduce(Buffer1K, new DeviceRange(0x20000, 8), 4, NcclDataType.Float32, NcclReduceOp.Sum)).ParamName);
        Assert.AreEqual("send", Assert.ThrowsExactly<ArgumentException>(() =>
            NcclChecks.AllReduce(DeviceRange.Null, Buffer1K, 4, NcclDataType.Float32, NcclReduceOp.Sum)).ParamName);
        NcclChecks.AllReduce(Buffer1K, Buffer1K, 512, NcclDataType.BFloat16, NcclReduceOp.Sum);
    }

    [TestMethod]
    public void Init_BadRanksOrTimeout_Refused()
    {
        Assert.AreEqual("ranks", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => NcclChecks.Init(0, 0, TimeSpan.FromSeconds(1))).ParamName);
        Assert.AreEqual("rank", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => NcclChecks.Init(2, 2, TimeSpan.FromSeconds(1))).ParamName);
        Assert.AreEqual("rank", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => NcclChecks.Init(2, -1, TimeSpan.FromSeconds(1))).ParamName);
        Assert.AreEqual("timeout", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => NcclChecks.Init(2, 1, TimeSpan.Zero)).ParamName);
        Assert.AreEqual("timeout", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => NcclChecks.Init(2, 1, Timeout.InfiniteTimeSpan)).ParamName);
        NcclChecks.Init(2, 1, TimeSpan.FromMilliseconds(1));
    }

    [TestMethod]
    public void DistinctDevices_TwoRanksOnOneGpu_SaysHowManyGpusAreNeeded()
    {
        var ex = Assert.ThrowsExactly<ArgumentException>(() => NcclChecks.DistinctDevices([0, 1, 1], "contexts"));
        Assert.AreEqual("contexts", ex.ParamName);
        Assert.Contains("3 ranks need 3 GPUs", ex.Message);
        Assert.ThrowsExactly<ArgumentException>(() => NcclChecks.DistinctDevices([], "contexts"));
        NcclChecks.DistinctDevices([3, 0, 1], "contexts");
    }

    [TestMethod]
    public void DataTypes_MatchTheStorageDtypes()
    {
        Assert.AreEqual(NcclDataType.BFloat16, NcclCommunicator.DataTypeOf(ScalarType.BFloat16));
        Assert.AreEqual(NcclDataType.Float16, NcclCommunicator.DataTypeOf(ScalarType.Float16));
        Assert.AreEqual(NcclDataType.Float32, NcclCommunicator.DataTypeOf(ScalarType.Float32));
        Assert.AreEqual(2, NcclChecks.ElementSize(NcclDataType.BFloat16));
        Assert.AreEqual(4, NcclChecks.ElementSize(NcclDataType.Int32));
        Assert.AreEqual(8, NcclChecks.ElementSize(NcclDataType.Float64));
        // nccl.h values
        Assert.AreEqual(9, (int)NcclDataType.BFloat16);
        Assert.AreEqual(6, (int)NcclDataType.Float16);
        Assert.AreEqual(7, (int)NcclDataType.Float32);
        Assert.AreEqual(2, (int)NcclDataType.Int32);
        Assert.AreEqual(7, (int)NcclResult.InProgress);
    }

    [TestMethod]
    public unsafe void NativeLayouts_MatchNcclH()
    {
        Assert.AreEqual(128, sizeof(NcclUniqueIdNative), "NCCL_UNIQUE_ID_BYTES");
        // ncclConfig_t of NCCL 2.17: size_t size; uint magic; uint version; int blocking, cgaClusterSize, minCTAs, maxCTAs;
        // const char* netName; int splitShare; (then trafficClass since 2.25)
        Assert.AreEqual(48, sizeof(NcclConfigNative));
        Assert.AreEqual(8, (int)Marshal.OffsetOf<NcclConfigNative>(nameof(NcclConfigNative.magic)));
        Assert.AreEqual(12, (int)Marshal.OffsetOf<NcclConfigNative>(nameof(NcclConfigNative.version)));
        Assert.AreEqual(16, (int)Marshal.OffsetOf<NcclConfigNative>(nameof(NcclConfigNative.blocking)));
        Assert.AreEqual(32, (int)Marshal.OffsetOf<NcclConfigNative>(nameof(NcclConfigNative.netName)));
        Assert.AreEqual(40, (int)Marshal.OffsetOf<NcclConfigNative>(nameof(NcclConfigNative.splitShare)));
        Assert.AreEqual(44, (int)Marshal.OffsetOf<NcclConfigNative>(nameof(NcclConfigNative.trafficClass)));
        NcclConfigNative config = NcclConfigNative.Create(blocking: false);
        Assert.AreEqual((nuint)48, config.size);
        Assert.AreEqual(0xcafebeefu, config.magic);
        Assert.AreEqual(21700u, config.version, "NCCL_VERSION(2,17,0)");
        Assert.AreEqual(0, config.blocking);
        Assert.AreEqual(int.MinValue, config.minCTAs, "NCCL_CONFIG_UNDEF_INT");
    }

    [TestMethod]
    public void UniqueId_RoundTripsAndRefusesWrongLengths()
    {
        byte[] bytes = Enumerable.Range(0, 128).Select(i => (byte)(i * 7)).ToArray();
        NcclUniqueId id = NcclUniqueId.FromBytes(bytes);
        CollectionAssert.AreEqual(bytes, id.ToBytes());
        CollectionAssert.AreEqual(bytes, NcclUniqueId.FromNative(id.ToNative()).ToBytes());
        Assert.AreEqual("bytes", Assert.ThrowsExactly<ArgumentException>(() => NcclUniqueId.FromBytes(new byte[127])).ParamName);
    }

    [TestMethod]
    public void Exception_NamesTheCallTheResultAndNcclsText()
    {
        var ex = new NcclException("ncclSend", NcclResult.InvalidArgument, "4 x Float32, rank 0 to 3");
        Assert.AreEqual("ncclSend", ex.ApiName);
        Assert.AreEqual(NcclResult.InvalidArgument, ex.Result);
        Assert.Contains("ncclSend (4 x Float32, rank 0 to 3) failed: ncclInvalidArgument (4)", ex.Message);
        Assert.Contains(NcclException.ErrorString(NcclResult.InvalidArgument), ex.Message);
        Assert.Contains("NCCL_DEBUG", ex.Message);
        Assert.AreEqual("ncclResult_77", NcclException.NameOf((NcclResult)77));
        Assert.Contains("timeout", new NcclException("token exchange", NcclResult.Timeout).Message);
    }

    [TestMethod]
    public void Environment_KeepsNvlinkMulticastOff()
    {
        CollectionAssert.Contains(NcclEnvironment.Settings.ToArray(), ("NCCL_NVLS_ENABLE", "0"));
        NcclEnvironment.Apply();
        Assert.AreEqual("0", Environment.GetEnvironmentVariable("NCCL_NVLS_ENABLE"));
    }
}
