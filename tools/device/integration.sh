#!/usr/bin/env bash
# integration.sh: the end-of-round GPU call over the whole merged tree, sized for one device call (10 minutes):
#   1. the GPU test category as four parallel shards (one test process each; the GPU is shared, the host work of the
#      reference legs runs side by side): the three-way block suite | the other block tests | kernels + interop +
#      reference + cli | fuzz (session 5: the block tests in one shard no longer finished in 250 s);
#   2. the stateful tests alone (soak and concurrency: they watch the device's free memory);
#   3. the synthetic 8-layer Qwen3-30B-A3B checkpoint: write, load onto the GPU, run every layer (run.sh load);
#   4. compute-sanitizer (memcheck, racecheck) over the sanitizer subset (run.sh sanitize);
#   5. bench, fwd and fwd+bwd: this tree's CLI beside a base CLI (same machine, same call) at Qwen3-30B-A3B, and this
#      Qwen3-235B-A22B, with the decode rows T = 1..64 of both configs; the
#      expert-parallel layer on one rank (bench --ep 1); the per-step breakdown of the new tree at T = 4096, 16384.
#
#   tools/device/integration.sh BASE_CLI_DIR     BASE_CLI_DIR: a folder with the base commit's published moenative.dll
#   MOENATIVE_INTEGRATION_STEPS="tests sanitize" ...   the steps to run (default "tests load bench"; any of
#                                                 tests, sanitize, load, bench)
#
# Needs .device/ (tools/device/pack.sh). Time limits per step: MOENATIVE_SHARD_TIMEOUT (330 s), MOENATIVE_SERIAL_TIMEOUT
# (60 s), MOENATIVE_LOAD_TIMEOUT (90 s: the write, a warm and a cold load), MOENATIVE_SANITIZE_TIMEOUT (240 s; MOENATIVE_SANITIZE_TOOLS), MOENATIVE_BENCH_TIMEOUT
# (50 s per bench run). Writes at most 8 files to $OUT (else artifacts/device; the device tool brings back 8):
# summary.txt, tests-logs.tgz (tests-{threeway,blocks,kernels,fuzz}.log; the stateful tests' output is appended to the
# fuzz log), load.log or sanitize.txt, perf.log, bench-new-{qwen3-30b-a3b,qwen3-235b-a22b}.json.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${OUT:-$root/artifacts/device}
base=${1:?usage: integration.sh BASE_CLI_DIR}
mkdir -p "$out"
run=$root/tools/device/run.sh
"$run" cli info > "$out/summary.txt" 2>&1 || { cat "$out/summary.txt"; exit 1; }   # also unpacks the runtime
dotnet=${MOENATIVE_DOTNET_ROOT:-/tmp/moenative-dotnet}/dotnet
tests=$root/.device/tests/MoeNative.Tests.dll
cli=$root/.device/cli/moenative.dll
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 COLUMNS=${COLUMNS:-160}
start=$SECONDS
note() { echo "[$((SECONDS - start)) s] $*" >> "$out/summary.txt"; }

counts() { # "N passed, N failed, N skipped" from one runner log (summed over the runs in it)
  awk '/^[[:space:]]*failed:[[:space:]]*[0-9]+/ { f += $2; n++ } /^[[:space:]]*succeeded:[[:space:]]*[0-9]+/ { p += $2 }
       /^[[:space:]]*skipped:[[:space:]]*[0-9]+/ { s += $2 }
       END { if (n == 0) print "no test summary (timed out?)"; else printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$1"
}

steps=" ${MOENATIVE_INTEGRATION_STEPS:-tests load bench} "
if [[ $steps == *" tests "* ]]; then
# ---- 1. shards in parallel
declare -A shard=(
  [threeway]="TestCategory=Gpu&FullyQualifiedName~MoeNative.Tests.Blocks.ThreeWayTests"
  [blocks]="TestCategory=Gpu&FullyQualifiedName~MoeNative.Tests.Blocks.&FullyQualifiedName!~MoeNative.Tests.Blocks.ThreeWayTests&FullyQualifiedName!~SoakAndConcurrency"
  [kernels]="TestCategory=Gpu&(FullyQualifiedName~MoeNative.Tests.Ptx.|FullyQualifiedName~MoeNative.Tests.Interop.|FullyQualifiedName~MoeNative.Tests.Reference.|FullyQualifiedName~MoeNative.Tests.Cli.|FullyQualifiedName~MoeNative.Tests.Sanitizer.)"
  [fuzz]="TestCategory=Gpu&FullyQualifiedName~MoeNative.Tests.Fuzz."
)
for name in "${!shard[@]}"; do
  timeout "${MOENATIVE_SHARD_TIMEOUT:-330}" "$dotnet" "$tests" --filter "${shard[$name]}" > "$out/tests-$name.log" 2>&1 &
done
wait
note "shards done"
# ---- 2. stateful tests alone
timeout "${MOENATIVE_SERIAL_TIMEOUT:-60}" "$dotnet" "$tests" --filter "${MOENATIVE_SERIAL_FILTER:-TestCategory=Gpu&FullyQualifiedName~SoakAndConcurrency}" \
  > "$out/tests-serial.tmp" 2>&1
note "stateful tests: $(counts "$out/tests-serial.tmp")"
grep -E '^failed ' -A8 "$out/tests-serial.tmp" | head -n 60 >> "$out/summary.txt"
{ echo; echo "==== stateful tests (alone)"; cat "$out/tests-serial.tmp"; } >> "$out/tests-fuzz.log"; rm -f "$out/tests-serial.tmp"
for name in threeway blocks kernels fuzz; do
  note "$name: $(counts "$out/tests-$name.log")"
  grep -E '^failed ' -A8 "$out/tests-$name.log" | head -n 80 >> "$out/summary.txt"
done
fi
# ---- 3. checkpoint load
if [[ $steps == *" load "* ]]; then
  timeout "${MOENATIVE_LOAD_TIMEOUT:-90}" "$run" load > /dev/null 2>&1; note "load exit $?"
  grep -E 'loaded|GB/s|host memory|Maximum resident|Elapsed|error' "$out/load.log" | head -n 20 >> "$out/summary.txt"
fi
# ---- 4. sanitizers
if [[ $steps == *" sanitize "* ]]; then
  timeout "${MOENATIVE_SANITIZE_TIMEOUT:-240}" "$run" sanitize ${MOENATIVE_SANITIZE_TOOLS:-memcheck racecheck} > /dev/null 2>&1
  note "sanitize exit $?"; cat "$out/sanitize.txt" >> "$out/summary.txt" 2>/dev/null
  rm -f "$out"/sanitize-*.log
fi
# ---- 5. bench, new beside base (both configs, decode rows included), decode without PDL, inference, one expert-parallel rank, breakdown
bench() { # bench TIMEOUT CLI CONFIG SEQLENS JSON|"" [ARGS...]
  local t=$1 c=$2 cfg=$3 seq=$4 js=$5; shift 5
  timeout "$t" "$dotnet" "$c" bench --config "$cfg" --seqlen "$seq" --no-reference ${js:+--json "$js"} "$@" 2>&1 \
    | grep -E '^  (fused|cublas)|error' | grep -v ' T='
}
if [[ $steps == *" bench "* ]]; then
  t=${MOENATIVE_BENCH_TIMEOUT:-50}
  {
    for cfg in qwen3-30b-a3b qwen3-235b-a22b; do
      seq=1,2,4,8,16,32,64,1024,4096,16384; [ $cfg = qwen3-235b-a22b ] && seq=1,2,4,8,16,32,64,4096
      echo "== new $cfg"; bench "$t" "$cli" $cfg $seq "$out/bench-new-$cfg.json" --backward
      echo "== base $cfg"; bench "$t" "$base/moenative.dll" $cfg $seq "" --backward
    done
    for cfg in qwen3-30b-a3b qwen3-235b-a22b; do
      echo "== new $cfg decode without PDL"; MOENATIVE_DECODE_PDL=0 bench "$t" "$cli" $cfg 1,2,4,8 ""
    done
    echo "== new qwen3-30b-a3b inference"; bench "$t" "$cli" qwen3-30b-a3b 4096,16384 "" --inference
    echo "== ep 1"; timeout "$t" "$dotnet" "$cli" bench --ep 1 --seqlen 1024,4096 --backward 2>&1 | tail -n 12
    echo "== breakdown (direct launches)"
    MOENATIVE_BENCH_BREAKDOWN=$out/perf.breakdown timeout "$t" "$dotnet" "$cli" bench --config qwen3-30b-a3b --seqlen 4096,16384 --backward --no-reference > /dev/null 2>&1
    cat "$out/perf.breakdown"; rm -f "$out/perf.breakdown"
  } > "$out/perf.log" 2>&1
  note "bench done"
fi
rm -f "$out/cli.log"
if ls "$out"/tests-*.log > /dev/null 2>&1; then   # one file for the four logs (the device tool brings back 8)
  (cd "$out" && tar czf tests-logs.tgz tests-*.log && rm -f tests-*.log)
fi
cat "$out/summary.txt"
[ -f "$out/perf.log" ] && cat "$out/perf.log"   # no bench step: no perf.log
exit 0
