#!/usr/bin/env bash
# profile.sh: Nsight Compute over the fused block's kernels at one T, from what tools/device/pack.sh put in .device/
# (found relative to this script). One forward+backward of `bench` with the default (non-autotuned) configs and direct
# launches, each matching kernel profiled once: speed of light, warp states (stall reasons), scheduler, memory.
#
#   tools/device/profile.sh [CONFIG] [T] [KERNEL_REGEX] [COUNT]
#       CONFIG        default qwen3-30b-a3b
#       T             default 4096
#       KERNEL_REGEX  default "sm90a|router|sum_over|combine|silu" (ncu -k regex:...)
#       COUNT         kernels to profile (ncu -c), default 14
#   MOENATIVE_PROFILE_BENCH_ARGS  the bench's mode (default "--backward"; e.g. "--decode always" for a forward through
#                 the decode kernels)
#   MOENATIVE_PROFILE_SECTIONS  the ncu sections of the details page (default: SpeedOfLight WarpStateStats SchedulerStats
#                 MemoryWorkloadAnalysis LaunchStats Occupancy; e.g. add SourceCounters for the top stall locations)
#
# Writes ncu.log (the details page) and ncu-raw.csv (a few raw metrics per kernel) to $OUT, else ./artifacts/device.
# The clocks are left alone (--clock-control none): the device is shared and its settings stay as they are.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
out=${OUT:-$root/artifacts/device}
config=${1:-qwen3-30b-a3b}
tokens=${2:-4096}
regex=${3:-sm90a|router|sum_over|combine|silu}
count=${4:-14}
mkdir -p "$out"
device_env profile.sh
bench=("$dotnet" "$root/.device/cli/moenative.dll" bench --config "$config" --seqlen "$tokens" --no-reference
       --no-graph --no-autotune ${MOENATIVE_PROFILE_BENCH_ARGS---backward})
sections=()
for s in ${MOENATIVE_PROFILE_SECTIONS:-SpeedOfLight WarpStateStats SchedulerStats MemoryWorkloadAnalysis LaunchStats Occupancy}; do
  sections+=(--section "$s")
done
timeout 240 "$ncu" --clock-control none --target-processes all -k "regex:$regex" -c "$count" "${sections[@]}" \
  "${bench[@]}" > "$out/ncu.log" 2>&1
echo "ncu rc=$? ($(grep -c '^  [a-z_0-9]*.*(' "$out/ncu.log") kernel sections)"
timeout 120 "$ncu" --clock-control none --target-processes all -k "regex:$regex" -c "$count" --csv --page raw \
  --metrics gpu__time_duration.sum,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_bytes.sum,dram__bytes.sum \
  "${bench[@]}" > "$out/ncu-raw.csv" 2>&1
echo "ncu raw rc=$?"
grep -E '^  [a-z_0-9]+.*\(|Duration|Compute \(SM\) Throughput|Memory Throughput|Stall|Warp Cycles Per Issued|Issued Warp' "$out/ncu.log" | head -n 200
