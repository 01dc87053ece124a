#!/usr/bin/env bash
# verify-ab.sh: one device call for one change, from what tools/device/pack.sh put in .device/: GPU test shards in
# parallel (one filter each), then an A/B bench spec (tools/device/ab.sh), then the direct-launch breakdown of this
# tree's CLI (MOENATIVE_BENCH_BREAKDOWN).
#
#   tools/device/verify-ab.sh SPEC_FILE FILTER...
#   MOENATIVE_SHARD_TIMEOUT     seconds per shard (default 200)
#   MOENATIVE_AB_TIMEOUT        seconds per bench row (ab.sh; default 60)
#   MOENATIVE_BREAKDOWN_ARGS    the breakdown's bench arguments (default "--config qwen3-30b-a3b --seqlen 4096,16384
#                               --backward"); "-" skips it
# Writes to $OUT (else artifacts/device): tests-<n>.log per shard, summary.txt (counts and the first failures of every
# shard), ab.log, breakdown.txt.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
out=${OUT:-$root/artifacts/device}
spec=${1:?usage: verify-ab.sh SPEC_FILE FILTER...}; shift
mkdir -p "$out"
device_env verify-ab.sh
tests=$root/.device/tests/MoeNative.Tests.dll
start=$SECONDS
note() { echo "[$((SECONDS - start)) s] $*" >> "$out/summary.txt"; }
n=0
for filter in "$@"; do
  n=$((n + 1))
  timeout "${MOENATIVE_SHARD_TIMEOUT:-200}" "$dotnet" "$tests" --filter "$filter" > "$out/tests-$n.log" 2>&1 &
done
wait
for i in $(seq 1 $n); do
  note "shard $i: $(awk '/^[[:space:]]*(total|failed|succeeded|skipped):/ { printf "%s %s ", $1, $2 } END { if (NR == 0) print "no summary" }' "$out/tests-$i.log")"
  grep -E '^failed ' -A8 "$out/tests-$i.log" | head -n 60 >> "$out/summary.txt"
done
OUT=$out "$root/tools/device/ab.sh" "$spec" > /dev/null
note "ab done"
breakdown=${MOENATIVE_BREAKDOWN_ARGS:---config qwen3-30b-a3b --seqlen 4096,16384 --backward}
if [ "$breakdown" != - ]; then
  # shellcheck disable=SC2086
  MOENATIVE_BENCH_BREAKDOWN=$out/breakdown.txt timeout 120 "$dotnet" "$(cli_dll new)" bench $breakdown --no-reference > /dev/null 2>&1
  note "breakdown exit $?"
fi
cat "$out/summary.txt"
