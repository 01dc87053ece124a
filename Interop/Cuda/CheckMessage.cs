using System.Runtime.CompilerServices;

namespace MoeNative.Interop;

/// <summary>
/// The text of an argument check's failure, built only when the check fails: an interpolated string passed as a
/// <see cref="CheckMessage"/> is formatted by this handler, which the compiler creates with the check's own
/// arguments and which turns itself off when they pass. So a launcher can describe every expected shape
/// (<c>$"[T={tokens},H={hidden}] {dtype}"</c>) and still allocate nothing when the call is valid.
/// </summary>
[InterpolatedStringHandler]
public ref struct CheckMessage
{
    private DefaultInterpolatedStringHandler _text;
    private readonly bool _enabled;

    /// <summary>For a size check: formatted only when <paramref name="actual"/> &lt; <paramref name="required"/>.</summary>
    public CheckMessage(int literalLength, int formattedCount, long actual, long required, out bool shouldAppend)
        : this(literalLength, formattedCount, actual < required, out shouldAppend)
    {
    }

    /// <summary>For a device range check: formatted only when <paramref name="range"/> cannot hold <paramref name="bytes"/>.</summary>
    public CheckMessage(int literalLength, int formattedCount, DeviceRange range, long bytes, out bool shouldAppend)
        : this(literalLength, formattedCount, !range.CanHold(bytes), out shouldAppend)
    {
    }

    /// <summary>For any check: formatted only when <paramref name="failed"/>.</summary>
    public CheckMessage(int literalLength, int formattedCount, bool failed, out bool shouldAppend)
    {
        _enabled = failed;
        shouldAppend = failed;
        _text = failed ? new DefaultInterpolatedStringHandler(literalLength, formattedCount) : default;
    }

    public void AppendLiteral(string value)
    {
        if (_enabled) _text.AppendLiteral(value);
    }

    public void AppendFormatted<T>(T value)
    {
        if (_enabled) _text.AppendFormatted(value);
    }

    public void AppendFormatted<T>(T value, string? format)
    {
        if (_enabled) _text.AppendFormatted(value, format);
    }

    /// <summary>The message ("" when the check passed and nothing was formatted).</summary>
    public string ToStringAndClear() => _enabled ? _text.ToStringAndClear() : "";
}

/// <summary>The argument checks of every launcher's device ranges (the one copy of them): before any launch.</summary>
public static class DeviceRangeChecks
{
    /// <summary>Throws unless <paramref name="range"/> can hold <paramref name="bytes"/> (nothing needed when 0).</summary>
    /// <param name="range">The argument.</param>
    /// <param name="bytes">Bytes its shape needs.</param>
    /// <param name="name">The parameter's name.</param>
    /// <param name="shape">The expected shape, e.g. <c>$"[T={t},H={h}] {dtype}"</c> (formatted only on failure).</param>
    /// <exception cref="ArgumentException">A null pointer, or a known size below <paramref name="bytes"/>.</exception>
    public static void Need(DeviceRange range, long bytes, string name,
        [InterpolatedStringHandlerArgument(nameof(range), nameof(bytes))] ref CheckMessage shape)
    {
        if (range.CanHold(bytes)) return;
        string text = shape.ToStringAndClear();
        if (range.IsNull) throw new ArgumentException($"{name} {text} is a null device pointer.", name);
        throw new ArgumentException($"{name} must hold {text} = {bytes} bytes; it has {range.Bytes}.", name);
    }

    /// <summary>Throws unless <paramref name="range"/>'s pointer is a multiple of <paramref name="alignment"/> bytes.</summary>
    /// <exception cref="ArgumentException">Names <paramref name="name"/>, the pointer and the alignment.</exception>
    public static void Aligned(DeviceRange range, ulong alignment, string name)
    {
        if (range.Pointer % alignment != 0)
            throw new ArgumentException($"{name} (0x{range.Pointer:x}) must be {alignment}-byte aligned.", name);
    }
}
