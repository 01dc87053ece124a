using MoeNative.Reference;
using MoeNative.Interop;

namespace MoeNative.Blocks.Benchmarking;

/// <summary>Which passes a benchmark row times.</summary>
public enum BenchmarkPass
{
    /// <summary>Forward only: X on the device to Y on the device.</summary>
    Forward,
    /// <summary>Forward then backward: X, dY on the device to Y and the five gradients on the device.</summary>
    ForwardBackward,
}

/// <summary>
/// Work and minimal memory traffic of one MoE block call: the numerators of TFLOP/s, GB/s and the floor.
/// </summary>
/// <remarks>
/// FLOPs (2 per multiply-add): forward = router <c>2·T·H·E</c> + GEMM1 <c>2·T·k·H·2I</c> + GEMM2 <c>2·T·k·I·H</c>;
/// the backward does two GEMMs (dX and dW) per forward GEMM, so forward+backward = 3 × forward.
/// Bytes (a lower bound: each tensor touched once, intermediates assumed to stay on chip):
/// forward = s·(hit·3·I·H + E·H + 2·T·H) — the gate_up and down weights of the experts that received at least one
/// token, the router weight, X read, Y written; forward+backward adds the same weights read again, their gradients
/// written, dY read and dX written: s·(3·hit·3·I·H + 3·E·H + 4·T·H). s = bytes per element of the storage dtype.
/// </remarks>
public readonly record struct MoeCost(double Flops, double Bytes)
{
    /// <summary>Cost of one pass of <paramref name="config"/> over <paramref name="tokens"/> tokens of which the
    /// routing hits <paramref name="expertsHit"/> distinct experts.</summary>
    public static MoeCost Of(MoeConfig config, ScalarType dtype, int tokens, int expertsHit, BenchmarkPass pass)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        if (expertsHit < 0 || expertsHit > config.NumExperts)
            throw new ArgumentOutOfRangeException(nameof(expertsHit), expertsHit, $"Expected 0..{config.NumExperts} (E).");
        double t = tokens, h = config.HiddenSize, i = config.IntermediateSize, e = config.NumExperts, k = config.TopK;
        double s = dtype.SizeOf();
        double forwardFlops = 2 * t * h * e + 2 * t * k * h * (2 * i) + 2 * t * k * i * h;
        double expertWeights = expertsHit * 3 * i * h;
        return pass switch
        {
            BenchmarkPass.Forward => new MoeCost(forwardFlops, s * (expertWeights + e * h + 2 * t * h)),
            BenchmarkPass.ForwardBackward => new MoeCost(3 * forwardFlops, s * (3 * expertWeights + 3 * e * h + 4 * t * h)),
            _ => throw new ArgumentOutOfRangeException(nameof(pass), pass, "Expected Forward or ForwardBackward."),
        };
    }

    /// <summary>Distinct experts in <paramref name="selected"/> ([T,k] expert ids, each in 0..E-1).</summary>
    public static int ExpertsHit(ReadOnlySpan<int> selected, int experts)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(experts);
        var hit = new bool[experts];
        int count = 0;
        foreach (int e in selected)
        {
            if ((uint)e >= (uint)experts)
                throw new ArgumentOutOfRangeException(nameof(selected), e, $"Expert id out of range 0..{experts - 1}.");
            if (!hit[e]) { hit[e] = true; count++; }
        }
        return count;
    }

    /// <summary>The floor in milliseconds: max(FLOPs / tensor rate, bytes / bandwidth).</summary>
    public double FloorMilliseconds(DeviceRates rates)
    {
        ArgumentNullException.ThrowIfNull(rates);
        return Math.Max(Flops / (rates.TensorTflops * 1e12), Bytes / (rates.BandwidthTBps * 1e12)) * 1e3;
    }
}

/// <summary>Peak rates of a card used for the floor: dense bf16 tensor-core TFLOP/s and memory TB/s.</summary>
/// <param name="DeviceName">The card's name as the driver reports it.</param>
/// <param name="TensorTflops">Dense bf16 tensor rate, 10^12 FLOP/s.</param>
/// <param name="BandwidthTBps">Memory bandwidth, 10^12 B/s.</param>
/// <param name="Source">Where the numbers come from: "table" or "measured".</param>
public sealed record DeviceRates(string DeviceName, double TensorTflops, double BandwidthTBps, string Source)
{
    /// <summary>
    /// Rates measured on the project's GPU machines (measured 2026-11-26; per-card numbers in docs/PERF.md): H100 SXM 80GB HBM3 684 TFLOP/s bf16 GEMM
    /// and 3.02 TB/s copy; H200 694 TFLOP/s and 4.2 TB/s. Null for any other card (measure instead).
    /// </summary>
    public static DeviceRates? FromTable(string deviceName)
    {
        ArgumentNullException.ThrowIfNull(deviceName);
        string n = deviceName.ToUpperInvariant();
        if (n.Contains("H200", StringComparison.Ordinal))
            return new DeviceRates(deviceName, 694, 4.2, "table");
        // NOTE: H100 PCIe and NVL have other clocks and memory; only the SXM part (reported as "H100 80GB HBM3"
        // or "H100 SXM...") was measured.
        if (n.Contains("H100", StringComparison.Ordinal) && !n.Contains("PCIE", StringComparison.Ordinal)
            && !n.Contains("NVL", StringComparison.Ordinal))
            return new DeviceRates(deviceName, 684, 3.02, "table");
        return null;
    }
}
