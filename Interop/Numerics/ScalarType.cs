namespace MoeNative.Interop;

/// <summary>Storage dtype of a tensor. Arithmetic always accumulates in fp32 (fp64 in the float64 reference checks).</summary>
public enum ScalarType
{
    /// <summary>IEEE binary32.</summary>
    Float32,
    /// <summary>IEEE binary16 (<see cref="Half"/>).</summary>
    Float16,
    /// <summary>bfloat16: the upper 16 bits of a binary32 (<see cref="BFloat16"/>).</summary>
    BFloat16,
}

/// <summary>Facts about <see cref="ScalarType"/> values.</summary>
public static class ScalarTypes
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(this ScalarType type) => type switch
    {
        ScalarType.Float32 => 4,
        ScalarType.Float16 => 2,
        ScalarType.BFloat16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Expected Float32, Float16 or BFloat16."),
    };

    /// <summary>Short lower-case name used by the CLI and file formats: fp32, fp16, bf16.</summary>
    public static string ShortName(this ScalarType type) => type switch
    {
        ScalarType.Float32 => "fp32",
        ScalarType.Float16 => "fp16",
        ScalarType.BFloat16 => "bf16",
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Expected Float32, Float16 or BFloat16."),
    };

    /// <summary>Parses fp32|f32|float32, fp16|f16|float16|half, bf16|bfloat16 (case-insensitive).</summary>
    public static ScalarType Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "fp32" or "f32" or "float32" or "float" => ScalarType.Float32,
        "fp16" or "f16" or "float16" or "half" => ScalarType.Float16,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        _ => throw new ArgumentException($"Unknown dtype '{text}'; expected bf16, fp16 or fp32.", nameof(text)),
    };
}
