using System.Globalization;
using MoeNative.Ptx;
using MoeNative.Interop;

namespace MoeNative.Tests.Ptx.GroupedGemmTests;

/// <summary>
/// CPU emulation of one shared-memory stage of the tensor-core kernels, at the level of byte addresses: the cp.async
/// loader mapping, the per-lane ldmatrix(.trans) addresses, the PTX ISA semantics of ldmatrix.x4 and of the
/// mma.m16n8k16 A/B/C fragments, the fp32 C-tile stores and the epilogue row loop. The formulas are those written
/// in the PTX files (see their headers) and the sizes come from the specialisation's template values, so a wrong
/// pitch, lane offset, fragment order or transpose shows up here as a wrong product, without a GPU.
/// </summary>
[TestClass]
public sealed class GroupedGemmFragmentMapTests
{
    public static IEnumerable<object[]> Configs() =>
        from layout in Enum.GetValues<GroupedGemmLayout>()
        from cfg in GroupedGemmSpecs.CandidateConfigs(layout, ScalarType.BFloat16)
        select new object[] { layout, cfg.Name };

    [TestMethod]
    [DynamicData(nameof(Configs))]
    public void OneStage_ThroughLoaderLdmatrixMmaAndEpilogue_GivesTheProduct(GroupedGemmLayout layout, string configName)
    {
        GemmConfig cfg = GroupedGemmSpecs.CandidateConfigs(layout, ScalarType.BFloat16).Single(c => c.Name == configName);
        GroupedGemmSpec spec = GroupedGemmSpecs.Create(layout, ScalarType.BFloat16, cfg);
        int V(string key) => int.Parse(spec.Values[key], CultureInfo.InvariantCulture);
        int bm = cfg.BlockM, bn = cfg.BlockN, threads = cfg.Threads, warpsN = V("WARPS_N");
        Assert.AreEqual(threads, V("THREADS"));

        // GEMM operands of one stage: A[m][red] (BM x BK), B[red][n] (BK x BN), small integers (exact in fp32)
        bool nt = layout == GroupedGemmLayout.ForwardNT, tn = layout == GroupedGemmLayout.BackwardWeightTN;
        int bk = cfg.BlockK;
        Assert.AreEqual(bk, V("BK"), "BK template value");
        Assert.AreEqual(bk, 1 << V("BK_SHIFT"));
        Assert.AreEqual(bk / 32, V("K32_HALVES"));
        var rng = new Random(7);
        var a = new int[bm, bk];
        var b = new int[bk, bn];
        for (int m = 0; m < bm; m++) for (int r = 0; r < bk; r++) a[m, r] = rng.Next(-3, 4);
        for (int r = 0; r < bk; r++) for (int n = 0; n < bn; n++) b[r, n] = rng.Next(-3, 4);

        // ---- loader: 16-byte chunks (8 elements) into the stage, exactly once each
        var smem = new Dictionary<int, int>();
        void Put(int addr, int value)
        {
            Assert.IsTrue(smem.TryAdd(addr, value), $"shared byte {addr} written twice");
        }
        int aStage = V("A_STAGE_BYTES");
        // K-major rows (NT: A and W, NN: A): KPITCH = 2*BK + 16 bytes; chunks per row BK/8
        int kPitch = tn ? 80 : V("KPITCH"), ldCpr = bk / 8;
        if (!tn)
        {
            Assert.AreEqual(2 * bk + 16, kPitch);
            Assert.AreEqual(ldCpr - 1, V("LD_CPR_MASK"));
            Assert.AreEqual(ldCpr, 1 << V("LD_CPR_SHIFT"));
            Assert.AreEqual(16 * kPitch, V("ROW16"));
            Assert.AreEqual(32 * kPitch, V("ROW32"));
            Assert.AreEqual(48 * kPitch, V("ROW48"));
        }
        int row16 = 16 * kPitch;
        int aPitch = tn ? V("A_PITCH") : kPitch, bPitch = nt ? kPitch : V("B_PITCH");
        for (int tid = 0; tid < threads; tid++)
        {
            if (!tn)
            {
                // A K-major: row tid/ldCpr + j*LD_RPI (LD_RPI_SMEM = LD_RPI*KPITCH), chunk column tid%ldCpr
                int ldRpi = V("LD_RPI_SMEM") / kPitch;
                Assert.AreEqual(threads / ldCpr, ldRpi);
                for (int j = 0; j < V("A_ITERS"); j++)
                {
                    int row = tid / ldCpr + j * ldRpi, col = tid % ldCpr;
                    for (int e = 0; e < 8; e++) Put(row * kPitch + col * 16 + 2 * e, a[row, col * 8 + e]);
                }
            }
            else
            {
                // A MN-major (stored [r][m]): row tid/A_CPR + j*A_RPI, chunk column tid%A_CPR
                for (int j = 0; j < V("A_ITERS"); j++)
                {
                    int row = tid / V("A_CPR") + j * V("A_RPI"), col = tid % V("A_CPR");
                    Assert.AreEqual(V("A_RPI_SMEM"), V("A_RPI") * aPitch);
                    for (int e = 0; e < 8; e++) Put(row * aPitch + col * 16 + 2 * e, a[col * 8 + e, row]);
                }
            }
            if (nt)
            {
                // W stored [n][k]: row tid/ldCpr + j*LD_RPI, chunk column tid%ldCpr
                for (int j = 0; j < V("B_ITERS"); j++)
                {
                    int row = tid / ldCpr + j * V("LD_RPI"), col = tid % ldCpr;
                    for (int e = 0; e < 8; e++) Put(aStage + row * kPitch + col * 16 + 2 * e, b[col * 8 + e, row]);
                }
            }
            else
            {
                // B stored [red][n]: row tid/B_CPR + j*B_RPI, chunk column tid%B_CPR
                for (int j = 0; j < V("B_ITERS"); j++)
                {
                    int row = tid / V("B_CPR") + j * V("B_RPI"), col = tid % V("B_CPR");
                    Assert.AreEqual(V("B_RPI_SMEM"), V("B_RPI") * bPitch);
                    for (int e = 0; e < 8; e++) Put(aStage + row * bPitch + col * 16 + 2 * e, b[row, col * 8 + e]);
                }
            }
        }
        Assert.AreEqual(bm * bk + bn * bk, smem.Count, "every element of the stage is loaded");
        Assert.IsLessThanOrEqualTo(V("STAGE_BYTES"), smem.Keys.Max() + 2, "the stage fits its STAGE_BYTES");

        // ---- warps: ldmatrix + mma, every k16 step of the stage (BK/16)
        // B (MN-major, NN and TN) at k16 step kk: + kk*16 reduction rows, the PTX's immediates B_K16 / B_K32 / B_K48
        // (and their "+ 32 bytes" twins for the second n16 pair)
        // TN's A (MN-major) at k16 step kk, m16 tile mt: + kk*16 stored rows + mt*32 bytes, the PTX's A_K{16kk}[_{32mt}]
        int AK16(int kk, int mt)
        {
            if (kk == 0) return mt * 32;
            int off = V(mt == 0 ? $"A_K{16 * kk}" : $"A_K{16 * kk}_{32 * mt}");
            Assert.AreEqual(16 * kk * aPitch + 32 * mt, off, $"A_K{16 * kk} + {32 * mt}");
            return off;
        }
        int BK16(int kk)
        {
            if (kk == 0) return 0;
            int off = V($"B_K{16 * kk}");
            Assert.AreEqual(16 * kk * bPitch, off, $"B_K{16 * kk}");
            Assert.AreEqual(off + 32, V($"B_K{16 * kk}_32"), $"B_K{16 * kk}_32");
            return off;
        }
        int cPitch = V("C_PITCH");
        var cTile = new Dictionary<int, long>();
        for (int warp = 0; warp < threads / 32; warp++)
        {
            int warpM = warp / warpsN, warpN = warp % warpsN;
            var acc = new long[32, 4, 4, 4];
            for (int kk = 0; kk < bk / 16; kk++)
            {
                var fa = new (int, int)[32, 4, 4];
                var fb = new (int, int)[32, 4, 2];
                for (int mt = 0; mt < 4; mt++)
                {
                    var addrs = new int[32];
                    for (int lane = 0; lane < 32; lane++)
                        addrs[lane] = tn
                            ? ((lane & 7) + (lane >> 4) * 8) * aPitch + (warpM * 64 + ((lane >> 3) & 1) * 8) * 2 + AK16(kk, mt)
                            : (warpM * 64 + (lane & 7) + ((lane >> 3) & 1) * 8) * kPitch + (lane >> 4) * 16 + mt * row16 + kk * 32;
                    (int, int)[,] regs = LdMatrixX4(smem, addrs, transpose: tn);
                    for (int t = 0; t < 32; t++) for (int i = 0; i < 4; i++) fa[t, mt, i] = regs[t, i];
                }
                for (int pair = 0; pair < 2; pair++)
                {
                    var addrs = new int[32];
                    for (int lane = 0; lane < 32; lane++)
                        addrs[lane] = nt
                            ? aStage + (warpN * 32 + (lane & 7) + (lane >> 4) * 8) * kPitch + ((lane >> 3) & 1) * 16 + pair * row16 + kk * 32
                            : aStage + ((lane & 7) + ((lane >> 3) & 1) * 8) * bPitch + (warpN * 32 + (lane >> 4) * 8) * 2 + pair * 32 + BK16(kk);
                    (int, int)[,] regs = LdMatrixX4(smem, addrs, transpose: !nt);
                    for (int t = 0; t < 32; t++)
                    {
                        fb[t, 2 * pair, 0] = regs[t, 0];
                        fb[t, 2 * pair, 1] = regs[t, 1];
                        fb[t, 2 * pair + 1, 0] = regs[t, 2];
                        fb[t, 2 * pair + 1, 1] = regs[t, 3];
                    }
                }
                for (int mt = 0; mt < 4; mt++)
                    for (int nt8 = 0; nt8 < 4; nt8++)
                        Mma(acc, fa, fb, mt, nt8);
            }
            // fragments -> fp32 C tile (rows warp_m*64 + mt*16 + g (+8), cols warp_n*32 + nt*8 + 2t)
            for (int t = 0; t < 32; t++)
            {
                int g = t >> 2, q = t & 3;
                int cSt0 = (warpM * 64 + g) * cPitch + q * 8 + warpN * 128;
                for (int mt = 0; mt < 4; mt++)
                    for (int nt8 = 0; nt8 < 4; nt8++)
                        for (int half = 0; half < 2; half++)
                            for (int h = 0; h < 2; h++)
                            {
                                int addr = cSt0 + mt * 16 * cPitch + half * 8 * cPitch + nt8 * 32 + 4 * h;
                                Assert.IsTrue(cTile.TryAdd(addr, acc[t, mt, nt8, 2 * half + h]), $"C tile byte {addr} written twice");
                            }
            }
        }

        // ---- epilogue row loop: thread owns chunk tid % EPI_CPR of rows tid / EPI_CPR + pass * EPI_RPP
        int cpr = V("EPI_CPR"), rpp = V("EPI_RPP");
        var seen = new bool[bm, bn];
        for (int tid = 0; tid < threads; tid++)
            for (int pass = 0; pass < 8; pass++)
            {
                int row = tid / cpr + pass * rpp, chunk = tid % cpr;
                for (int e = 0; e < 8; e++)
                {
                    int col = chunk * 8 + e;
                    long expected = 0;
                    for (int r = 0; r < bk; r++) expected += a[row, r] * b[r, col];
                    Assert.AreEqual(expected, cTile[row * cPitch + chunk * 32 + 4 * e], $"{spec.ModuleName}: C[{row},{col}]");
                    seen[row, col] = true;
                }
            }
        Assert.IsTrue(seen.Cast<bool>().All(x => x), "the row loop covers the whole tile");
    }

    /// <summary>ldmatrix.sync.aligned.m8n8.x4(.trans).b16: lanes 8j..8j+7 give the row addresses of matrix j; lane t
    /// receives, for matrix j, (row t/4, cols 2(t%4), +1), or with .trans (rows 2(t%4), +1, col t/4).</summary>
    private static (int, int)[,] LdMatrixX4(Dictionary<int, int> smem, int[] addrs, bool transpose)
    {
        var regs = new (int, int)[32, 4];
        for (int j = 0; j < 4; j++)
        {
            int At(int r, int c)
            {
                int addr = addrs[8 * j + r];
                Assert.AreEqual(0, addr % 16, "ldmatrix row addresses are 16-byte aligned");
                return smem.TryGetValue(addr + 2 * c, out int v) ? v
                    : throw new AssertFailedException($"ldmatrix reads shared byte {addr + 2 * c}, which no loader wrote");
            }
            for (int t = 0; t < 32; t++)
                regs[t, j] = transpose
                    ? (At(2 * (t % 4), t / 4), At(2 * (t % 4) + 1, t / 4))
                    : (At(t / 4, 2 * (t % 4)), At(t / 4, 2 * (t % 4) + 1));
        }
        return regs;
    }

    /// <summary>mma.m16n8k16.row.col (PTX ISA fragments; g = lane/4, q = lane%4): A reg i holds row g (+8 for i = 1, 3),
    /// cols 2q, 2q+1 (+8 for i >= 2); B reg i holds rows 2q, 2q+1 (+8 for i = 1), col g; D element i is row g
    /// (+8 for i >= 2), col 2q + (i &amp; 1).</summary>
    private static void Mma(long[,,,] acc, (int, int)[,,] fa, (int, int)[,,] fb, int mt, int nt)
    {
        var am = new int[16, 16];
        var bmat = new int[16, 8];
        for (int t = 0; t < 32; t++)
        {
            int g = t >> 2, q = t & 3;
            for (int i = 0; i < 4; i++)
            {
                int row = g + (i is 1 or 3 ? 8 : 0), col = 2 * q + (i >= 2 ? 8 : 0);
                (am[row, col], am[row, col + 1]) = fa[t, mt, i];
            }
            for (int i = 0; i < 2; i++)
            {
                int k = 2 * q + 8 * i;
                (bmat[k, g], bmat[k + 1, g]) = fb[t, nt, i];
            }
        }
        for (int t = 0; t < 32; t++)
        {
            int g = t >> 2, q = t & 3;
            for (int i = 0; i < 4; i++)
            {
                int row = g + (i >= 2 ? 8 : 0), col = 2 * q + (i & 1);
                long sum = 0;
                for (int k = 0; k < 16; k++) sum += am[row, k] * bmat[k, col];
                acc[t, mt, nt, i] += sum;
            }
        }
    }
}
