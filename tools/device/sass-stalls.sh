#!/usr/bin/env bash
# sass-stalls.sh: Nsight Compute's per-instruction warp-stall samples (source page, SASS) of ONE kernel of the fused
# block's fwd+bwd at one T (default configs, direct launches), from what tools/device/pack.sh put in .device/: where
# each warp role of a kernel waits (a consumer on its full barrier, the producer on its loads or on empty, ...).
#
#   tools/device/sass-stalls.sh [CONFIG] [T] [KERNEL_REGEX] [SKIP]
#       CONFIG default qwen3-30b-a3b; T default 4096; KERNEL_REGEX default grouped_gemm_tn; SKIP (ncu
#       --launch-skip: matching launches passed over first) default 0
#   MOENATIVE_STALLS_AUTOTUNE=1  let the bench autotune (its candidates' launches match too: name a tile exactly,
#       e.g. grouped_gemm_nt_sm90a_bf16_wgmma_128x256x64_s3_stg, to sample the tile autotune picks)
# Writes sass.csv (every SASS line with its samples) and sass-top.txt (the 60 lines with the most samples) to $OUT,
# else ./artifacts/device. Clocks are left alone (--clock-control none).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
out=${OUT:-$root/artifacts/device}
mkdir -p "$out"
device_env sass-stalls.sh
timeout 240 "$ncu" --clock-control none --target-processes all -k "regex:${3:-grouped_gemm_tn}" --launch-skip "${4:-0}" -c 1 \
  --section SourceCounters --section WarpStateStats --page source --print-source sass --csv \
  "$dotnet" "$root/.device/cli/moenative.dll" bench --config "${1:-qwen3-30b-a3b}" --seqlen "${2:-4096}" --no-reference \
  --no-graph $([ "${MOENATIVE_STALLS_AUTOTUNE:-0}" = 1 ] || echo --no-autotune) --backward > "$out/sass.csv" 2> "$out/sass.err"
echo "ncu rc=$? ($(wc -l < "$out/sass.csv") lines)"
python3 - "$out/sass.csv" > "$out/sass-top.txt" <<'PY'
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1], errors="replace"))]
head = next((i for i, r in enumerate(rows) if any("Warp Stall Sampling (All" in c for c in r)), None)
if head is None:
    print("no per-instruction samples found; first lines:"); [print(",".join(r)[:200]) for r in rows[:15]]; sys.exit()
h = rows[head]
si = next(i for i, c in enumerate(h) if "Warp Stall Sampling (All" in c)
src = next((i for i, c in enumerate(h) if c in ("Source", "# Source")), 1)
addr = next((i for i, c in enumerate(h) if "Address" in c), 0)
data = [r for r in rows[head + 1:] if len(r) > si]
def num(s):
    try: return float(s.replace(",", ""))
    except ValueError: return 0.0
total = sum(num(r[si]) for r in data) or 1
print(f"total samples {total:.0f}; columns: {', '.join(h)}")
for r in sorted(data, key=lambda r: -num(r[si]))[:60]:
    print(f"{100 * num(r[si]) / total:5.1f}%  {r[addr]:>8}  {r[src][:110]}")
PY
head -n 70 "$out/sass-top.txt"
