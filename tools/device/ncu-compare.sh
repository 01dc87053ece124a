#!/usr/bin/env bash
# ncu-compare.sh: the same kernels of the fused block's fwd+bwd under several CLIs, in ONE device call: Nsight Compute's
# speed of light, memory workload and warp-state sections (default configs, direct launches) of the first COUNT
# launches matching KERNEL_REGEX, once per CLI, so two versions of a kernel are compared on one machine.
#
#   tools/device/ncu-compare.sh CONFIG T KERNEL_REGEX COUNT CLI...
#       CLI  new (this tree's .device/cli) or a folder with a published moenative.dll (e.g. .carry/base-672)
# Writes ncu-<n>.log (the details page of the n-th CLI) to $OUT, else ./artifacts/device, and prints the key rows.
# Clocks are left alone (--clock-control none).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
out=${OUT:-$root/artifacts/device}
config=${1:?usage: ncu-compare.sh CONFIG T KERNEL_REGEX COUNT CLI...}; tokens=$2; regex=$3; count=$4; shift 4
mkdir -p "$out"
device_env ncu-compare.sh
n=0
for cli in "$@"; do
  n=$((n + 1)); dll=$(cli_dll "$cli")
  timeout 200 "$ncu" --clock-control none --target-processes all -k "regex:$regex" -c "$count" \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
    "$dotnet" "$dll" bench --config "$config" --seqlen "$tokens" --no-reference --no-graph --no-autotune --backward \
    > "$out/ncu-$n.log" 2>&1
  echo "== $cli (ncu rc=$?)"
  grep -E "grouped_gemm|Duration|Memory Throughput|DRAM Throughput|L2 Cache Throughput|L1/TEX Cache Throughput|Compute \(SM\) Throughput|L2 Hit Rate|Stall|Warp Cycles Per Issued" "$out/ncu-$n.log" | grep -v "^==PROF" | head -n 60
done
