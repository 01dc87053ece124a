#!/usr/bin/env bash
# round.sh: one performance round of a kernel change in ONE device call: the GPU tests that cover it, then this
# tree's CLI beside a base CLI (same machine, same call): `bench --gemm` (each grouped GEMM alone), the block fwd and
# fwd+bwd at large T for both Qwen3 configs, and this tree's per-step breakdown.
#
#   tools/device/round.sh BASE_CLI_DIR [TEST_FILTER] [SMOKE_FILTER]
#       BASE_CLI_DIR  a folder with the base commit's published moenative.dll
#       TEST_FILTER   default "TestCategory=Gpu&FullyQualifiedName~Sm90a" (none = skip the tests)
#       SMOKE_FILTER  GPU tests run first with a 90 s limit (default none): when they fail or hang the round stops there,
#                     before a hung kernel can eat the call (a new kernel's smallest test)
#   MOENATIVE_ROUND_GEMM_SEQLENS (default 4096,16384), MOENATIVE_ROUND_SEQLENS_30B (default 1024,4096,16384),
#   MOENATIVE_ROUND_SEQLENS_235B (default 4096): the token counts; MOENATIVE_ROUND_DECODE=1 adds the decode rows
#   (T = 1..8, both configs, new beside base); MOENATIVE_ROUND_GEMM_ALSO=DIR adds a third CLI's `bench --gemm`
#   (gemm-also.json: an intermediate commit, so one call separates two changes); MOENATIVE_ROUND_GEMM_BASE=0 skips the base's `bench --gemm` (this
#   tree's lists every tile of ours, the base's tiles included); MOENATIVE_ROUND_BREAKDOWN=0 skips the breakdown.
#
# Needs .device/ (tools/device/pack.sh). Writes to $OUT (else artifacts/device), at most 8 files: round.log (the
# summary), tests.log, gemm-{new,base}.json (gemm-also.json), bench-new-{qwen3-30b-a3b,qwen3-235b-a22b}.json, breakdown.txt.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${OUT:-$root/artifacts/device}
base=${1:?usage: round.sh BASE_CLI_DIR [TEST_FILTER]}
filter=${2:-TestCategory=Gpu&FullyQualifiedName~Sm90a}
smoke=${3:-none}
mkdir -p "$out"
log=$out/round.log
"$root/tools/device/run.sh" cli info > "$log" 2>&1 || { cat "$log"; exit 1; }   # also unpacks the runtime
rm -f "$out/cli.log"
dotnet=${MOENATIVE_DOTNET_ROOT:-/tmp/moenative-dotnet}/dotnet
cli=$root/.device/cli/moenative.dll
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 COLUMNS=${COLUMNS:-160}
start=$SECONDS
note() { echo "[$((SECONDS - start)) s] $*" >> "$log"; }
if [ "$smoke" != none ]; then
  timeout 90 "$dotnet" "$root/.device/tests/MoeNative.Tests.dll" --filter "$smoke" > "$out/tests.log" 2>&1; rc=$?
  note "smoke tests exit $rc: $(grep -E '^[[:space:]]*(succeeded|failed|skipped):' "$out/tests.log" | tr -s ' \n' ' ')"
  grep -E '^failed ' -A8 "$out/tests.log" | head -n 40 >> "$log"
  [ $rc -eq 0 ] || { cat "$log"; exit 1; }
fi
if [ "$filter" != none ]; then
  timeout 240 "$dotnet" "$root/.device/tests/MoeNative.Tests.dll" --filter "$filter" > "$out/tests.log" 2>&1
  note "tests exit $?: $(grep -E '^[[:space:]]*(succeeded|failed|skipped):' "$out/tests.log" | tr -s ' \n' ' ')"
  grep -E '^failed ' -A8 "$out/tests.log" | head -n 60 >> "$log"
fi
gemm_seq=${MOENATIVE_ROUND_GEMM_SEQLENS:-4096,16384}
gemm_sides="new base"; [ "${MOENATIVE_ROUND_GEMM_BASE:-1}" = 0 ] && gemm_sides=new
[ -n "${MOENATIVE_ROUND_GEMM_ALSO:-}" ] && gemm_sides="$gemm_sides also"
for side in $gemm_sides; do
  c=$cli; [ $side = base ] && c=$base/moenative.dll; [ $side = also ] && c=$root/$MOENATIVE_ROUND_GEMM_ALSO/moenative.dll
  echo "== bench --gemm $side" >> "$log"
  timeout 120 "$dotnet" "$c" bench --gemm --seqlen "$gemm_seq" --json "$out/gemm-$side.json" 2>&1 | grep -vE '^\s*$' | tail -n 40 >> "$log"
done
note "gemm benches done"
for cfg in qwen3-30b-a3b qwen3-235b-a22b; do
  seq=${MOENATIVE_ROUND_SEQLENS_30B:-1024,4096,16384}; [ $cfg = qwen3-235b-a22b ] && seq=${MOENATIVE_ROUND_SEQLENS_235B:-4096}
  for side in new base; do
    c=$cli; js=(--json "$out/bench-new-$cfg.json"); [ $side = base ] && { c=$base/moenative.dll; js=(); }
    echo "== $side $cfg" >> "$log"
    timeout 90 "$dotnet" "$c" bench --config $cfg --seqlen "$seq" --no-reference --backward "${js[@]}" 2>&1 \
      | grep -E '^  (fused|cublas)|error' >> "$log"
  done
done
note "block benches done"
if [ "${MOENATIVE_ROUND_DECODE:-0}" = 1 ]; then
  for cfg in qwen3-30b-a3b qwen3-235b-a22b; do
    for side in new base; do
      c=$cli; [ $side = base ] && c=$base/moenative.dll
      echo "== decode $side $cfg" >> "$log"
      timeout 60 "$dotnet" "$c" bench --config $cfg --seqlen 1,2,4,8 --no-reference 2>&1 | grep -E '^  fused T=|error' >> "$log"
    done
  done
  note "decode benches done"
fi
if [ "${MOENATIVE_ROUND_BREAKDOWN:-1}" != 0 ]; then
  MOENATIVE_BENCH_BREAKDOWN=$out/breakdown.txt timeout 90 "$dotnet" "$cli" bench --config qwen3-30b-a3b --seqlen 4096,16384 \
    --backward --no-reference > /dev/null 2>&1
  note "breakdown exit $?"
fi
cat "$log"
