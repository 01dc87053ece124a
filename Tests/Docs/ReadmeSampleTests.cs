using System.Text.RegularExpressions;
using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Tests.Docs;

/// <summary>The README's "Use it from C#" sample is this project's <c>Docs/ReadmeSample.cs</c>, character for
/// character (whitespace aside), so it compiles with the tests; running it (CPU path; the GPU branch on a GPU machine)
/// gives the HF reference's output and input gradient, checked here against the grouped reference.</summary>
[TestClass]
public sealed partial class ReadmeSampleTests
{
    [TestMethod]
    public void ReadmeSample_IsTheCompiledFile()
    {
        string readme = File.ReadAllText(RepositoryFiles.Path("README.md"));
        Match block = CSharpBlock().Match(readme);
        Assert.IsTrue(block.Success, "README has a ```csharp block with `public static class ReadmeSample`");
        string compiled = File.ReadAllText(RepositoryFiles.Path("Tests/Docs/ReadmeSample.cs"));

        Assert.AreEqual(Normalise(compiled), Normalise(block.Groups["code"].Value),
            "README's sample and Tests/Docs/ReadmeSample.cs differ: change both");
        int lines = block.Groups["code"].Value.Split('\n').Length;
        Assert.IsTrue(lines is >= 20 and <= 45, $"the sample is about 30 lines, got {lines}");
    }

    [TestMethod]
    public void ReadmeSample_Runs_AndAgreesWithTheGroupedReference()
    {
        float[] result = ReadmeSample.Run();

        MoeConfig config = MoeConfig.Preset("tiny");
        const int tokens = 8;
        long th = (long)tokens * config.HiddenSize;
        Assert.HasCount((int)(2 * th), result);
        MoeWeights weights = MoeWeights.Random(config, 1, ScalarType.BFloat16);
        float[] x = TensorRandom.Normal(th, 2, 1f, ScalarType.BFloat16);
        float[] dY = TensorRandom.Normal(th, 3, 1f, ScalarType.BFloat16);
        var hf = new HfMoeReference(weights, ScalarType.BFloat16);
        MoeIntermediates hfForward = hf.Forward(x);
        var grouped = new GroupedMoeReference(weights, ScalarType.BFloat16);
        MoeIntermediates forward = grouped.Forward(x, hfForward.Routing);
        MoeGradients grads = grouped.Backward(forward, dY);
        double tol = TensorTolerance.For(ScalarType.BFloat16);

        TensorComparison output = TensorComparison.Scaled("output", result.AsSpan(0, (int)th), forward.Output,
            TensorTolerance.ForHfAccumulatedOutput(ScalarType.BFloat16, config.TopK));
        TensorComparison dx = TensorComparison.Scaled("grad_hidden_states", result.AsSpan((int)th), grads.HiddenStates, tol);
        Assert.IsTrue(output.AllClose, output.ToString());
        Assert.IsTrue(dx.AllClose, dx.ToString());
    }

    private static string Normalise(string code) => Regex.Replace(code, @"\s+", " ").Trim();

    [GeneratedRegex(@"```csharp\r?\n(?<code>using MoeNative[^`]*?public static class ReadmeSample.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();
}
