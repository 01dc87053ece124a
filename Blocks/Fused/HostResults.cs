using MoeNative.Interop;
using MoeNative.Reference;

namespace MoeNative.Blocks;

/// <summary>Reads the fused block's device results back into the reference's record types (host API only).</summary>
internal static class HostResults
{
    /// <summary>The record of a T = 0 forward: every array empty.</summary>
    public static MoeIntermediates Empty(MoeConfig c, ScalarType dt)
    {
        var routing = new MoeRouting(0, c.TopK, [], []);
        return new MoeIntermediates
        {
            Config = c,
            DType = dt,
            Tokens = 0,
            Input = [],
            RouterLogits = [],
            RouterProbs = [],
            Routing = routing,
            Indices = routing.Indices(c.NumExperts),
            FirstGemm = [],
            Intermediate = [],
            SecondGemm = [],
            Unpermuted = [],
            Output = [],
        };
    }

    /// <summary>
    /// Downloads Y, the router logits/probs, the routing actually used and (when <paramref name="all"/>) every
    /// intermediate. The stream must have been synchronised.
    /// </summary>
    public static MoeIntermediates ReadForward(Qwen3MoeFusedBlock block, Qwen3MoeFusedBlock.HostIo io, BlockWorkspace ws,
        int tokens, int tk, MoeRouting? routingIn, bool all)
    {
        MoeConfig c = block.Config;
        ScalarType dt = block.DType;
        int h = c.HiddenSize, i = c.IntermediateSize, e = c.NumExperts;
        DeviceBuffer<byte> arena = ws.Arena;

        float[] input = DeviceTransfer.Download(io.X, 0, (long)tokens * h, dt);
        float[] output = DeviceTransfer.Download(io.Y, 0, (long)tokens * h, dt);
        float[] logits = DeviceTransfer.Download(arena, ws.Offset(BlockBuffer.Logits), (long)tokens * e, dt);
        float[] probs = DeviceTransfer.Download(arena, ws.Offset(BlockBuffer.Probs), (long)tokens * e, ScalarType.Float32);
        MoeRouting routing = routingIn is not null
            ? new MoeRouting(tokens, c.TopK, (int[])routingIn.Selected.Clone(),
                DeviceTransfer.Download(io.RoutingWeights, 0, tk, dt))
            : new MoeRouting(tokens, c.TopK,
                DeviceTransfer.DownloadInt32(arena, ws.Offset(BlockBuffer.Selected), tk),
                DeviceTransfer.Download(arena, ws.Offset(BlockBuffer.RoutingWeights), tk, dt));

        // NOTE: RoutingIndices has no public constructor from arrays, so the record is built from the selection
        // on the host and its arrays are then overwritten with what the device's RoutingIndices kernel wrote:
        // TokenCounts/Gather/Inverse of the result are the device's (ExpertOffsets stay the host's).
        RoutingIndices indices = routing.Indices(e);
        if (all)
        {
            DeviceTransfer.DownloadInt32(arena, ws.Offset(BlockBuffer.MSizes), e).CopyTo(indices.TokenCounts, 0);
            DeviceTransfer.DownloadInt32(arena, ws.Offset(BlockBuffer.Gather), tk).CopyTo(indices.Gather, 0);
            DeviceTransfer.DownloadInt32(arena, ws.Offset(BlockBuffer.Inverse), tk).CopyTo(indices.Inverse, 0);
        }

        float[] firstGemm = [], intermediate = [], secondGemm = [], unpermuted = [];
        if (all)
        {
            // NOTE: an InferenceOnly forward does not write G1 on the sm_90a path: it is reported empty on every path.
            firstGemm = block.Options.InferenceOnly ? [] : DeviceTransfer.Download(arena, ws.Offset(BlockBuffer.FirstGemm), (long)tk * 2 * i, dt);
            intermediate = DeviceTransfer.Download(arena, ws.Offset(BlockBuffer.Intermediate), (long)tk * i, dt);
            float[] g2 = DeviceTransfer.Download(arena, ws.Offset(BlockBuffer.SecondGemm), (long)tk * h, dt);
            // GEMM2's buffer is expert order, or token-slot order with PermuteY; the other layout is a row
            // reordering through the device's gather (U[gather[r]] = G2[r]), pure data movement.
            int[] gather = indices.Gather;
            var other = new float[g2.LongLength];
            Array.Fill(other, float.NaN); // rows no valid gather entry reaches stay NaN
            bool slotOrder = block.Options.PermuteY;
            for (int r = 0; r < tk; r++)
            {
                int p = gather[r];
                if ((uint)p >= (uint)tk) continue;
                if (slotOrder) g2.AsSpan(p * h, h).CopyTo(other.AsSpan(r * h, h));   // G2[r] = U[gather[r]]
                else g2.AsSpan(r * h, h).CopyTo(other.AsSpan(p * h, h));             // U[gather[r]] = G2[r]
            }
            (secondGemm, unpermuted) = slotOrder ? (other, g2) : (g2, other);
        }

        return new MoeIntermediates
        {
            Config = c,
            DType = dt,
            Tokens = tokens,
            Input = input,
            RouterLogits = logits,
            RouterProbs = probs,
            Routing = routing,
            Indices = indices,
            FirstGemm = firstGemm,
            Intermediate = intermediate,
            SecondGemm = secondGemm,
            Unpermuted = unpermuted,
            Output = output,
        };
    }
}
