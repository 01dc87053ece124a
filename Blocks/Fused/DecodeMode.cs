namespace MoeNative.Blocks;

/// <summary>Which expert kernels the fused block's forward runs for a given T (see <see cref="FusedBlockOptions.Decode"/>).</summary>
public enum DecodeMode
{
    /// <summary>The decode kernels for T ≤ <see cref="FusedDecodePath.AutoMaxTokens"/> when the config and buffers
    /// allow them (bf16/fp16, E ≤ 256, H and I multiples of 8, 16-byte aligned X), else the grouped GEMMs.</summary>
    Auto,

    /// <summary>Always the grouped GEMMs (the prefill/training path).</summary>
    Off,

    /// <summary>The decode kernels at every T (for tests and measurements); the block's constructor refuses a config
    /// they cannot run, and a forward refuses an X that is not 16-byte aligned.</summary>
    Always,
}
