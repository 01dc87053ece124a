namespace MoeNative.Interop;

/// <summary>Grid or block dimensions of a launch.</summary>
public readonly record struct Dim3(uint X, uint Y = 1, uint Z = 1)
{
    /// <summary>X·Y·Z.</summary>
    public ulong Volume => (ulong)X * Y * Z;

    public static implicit operator Dim3(uint x) => new(x);

    public override string ToString() => $"({X},{Y},{Z})";
}
