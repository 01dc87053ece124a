#!/usr/bin/env bash
# integration.sh: the end-of-round GPU call over the whole merged tree, sized for one device call (10 minutes):
#   1. the GPU test category as three parallel shards (one test process each; the GPU is shared, the host work of the
#      reference legs runs side by side): blocks | kernels + interop + reference + cli | fuzz;
#   2. the stateful tests alone (soak and concurrency: they watch the device's free memory);
#   3. the synthetic 8-layer Qwen3-30B-A3B checkpoint: write, load onto the GPU, run every layer (run.sh load);
#   4. bench, fwd and fwd+bwd: this tree's CLI beside a base CLI (same machine, same call) at Qwen3-30B-A3B, and this
#      tree's alone at Qwen3-235B-A22B.
#
#   tools/device/integration.sh BASE_CLI_DIR     BASE_CLI_DIR: a folder with the base commit's published moenative.dll
#   MOENATIVE_INTEGRATION_STEPS=tests ...       steps 1 and 2 only (a re-check after a fix)
#
# Needs .device/ (tools/device/pack.sh). Time limits per step: MOENATIVE_SHARD_TIMEOUT (330 s), MOENATIVE_SERIAL_TIMEOUT
# (60 s), MOENATIVE_LOAD_TIMEOUT (60 s), MOENATIVE_BENCH_TIMEOUT (50 s per bench run). Writes 8 files to $OUT (else
# artifacts/device): summary.txt, tests-{blocks,kernels,fuzz}.log (the stateful tests' output is appended to the fuzz
# log), perf.log, load.log, bench-new-{qwen3-30b-a3b,qwen3-235b-a22b}.json.
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

# ---- 1. shards in parallel
declare -A shard=(
  [blocks]="TestCategory=Gpu&FullyQualifiedName~MoeNative.Tests.Blocks.&FullyQualifiedName!~SoakAndConcurrency"
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
for name in blocks kernels fuzz; do
  note "$name: $(counts "$out/tests-$name.log")"
  grep -E '^failed ' -A8 "$out/tests-$name.log" | head -n 80 >> "$out/summary.txt"
done
if [ "${MOENATIVE_INTEGRATION_STEPS:-tests load bench}" = tests ]; then rm -f "$out/cli.log"; cat "$out/summary.txt"; exit 0; fi
# ---- 3. checkpoint load
timeout "${MOENATIVE_LOAD_TIMEOUT:-60}" "$run" load > /dev/null 2>&1; note "load exit $?"
grep -E 'loaded|GB/s|host memory|Maximum resident|Elapsed|error' "$out/load.log" | head -n 20 >> "$out/summary.txt"
# ---- 4. bench, new beside base (Qwen3-30B-A3B), new alone (Qwen3-235B-A22B)
bench() { # bench TIMEOUT CLI CONFIG SEQLENS [JSON]
  timeout "$1" "$dotnet" "$2" bench --config "$3" --seqlen "$4" --backward --no-reference ${5:+--json "$5"} 2>&1 \
    | grep -E '^  (fused|cublas)|error' | grep -v ' T='
}
{
  echo "== new qwen3-30b-a3b"; bench "${MOENATIVE_BENCH_TIMEOUT:-50}" "$cli" qwen3-30b-a3b 1,8,1024,4096,16384 "$out/bench-new-qwen3-30b-a3b.json"
  echo "== base qwen3-30b-a3b"; bench "${MOENATIVE_BENCH_TIMEOUT:-50}" "$base/moenative.dll" qwen3-30b-a3b 1,8,1024,4096,16384
  echo "== new qwen3-235b-a22b"; bench "${MOENATIVE_BENCH_TIMEOUT:-50}" "$cli" qwen3-235b-a22b 1,4096 "$out/bench-new-qwen3-235b-a22b.json"
} > "$out/perf.log" 2>&1
note "bench done"
rm -f "$out/cli.log"
cat "$out/summary.txt" "$out/perf.log"
