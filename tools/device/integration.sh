#!/usr/bin/env bash
# integration.sh: the end-of-round GPU call over the whole merged tree, split in two so that each fits one device
# call (10 minutes): `tests` runs the GPU test category as parallel shards (one process each; the GPU is shared,
# the host work of the reference legs runs side by side), then the stateful tests alone; `perf` runs bench (this
# tree's CLI beside a base CLI, same machine, same call) and the synthetic 8-layer checkpoint load.
#
#   tools/device/integration.sh tests            shards: blocks | kernels+interop+cli | fuzz, then MOENATIVE_SERIAL_FILTER
#   tools/device/integration.sh perf BASE_CLI    BASE_CLI: a folder with the base commit's published moenative.dll
#
# Needs .device/ (tools/device/pack.sh). Writes at most 8 files to $OUT (else artifacts/device): summary.txt and
# tests-{blocks,kernels,fuzz,serial}.log, or bench-{new,base}-*.json and perf.log, load.log.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${OUT:-$root/artifacts/device}
mkdir -p "$out"
run=$root/tools/device/run.sh
"$run" cli info > "$out/summary.txt" 2>&1 || { cat "$out/summary.txt"; exit 1; }   # also unpacks the runtime
dotnet=${MOENATIVE_DOTNET_ROOT:-/tmp/moenative-dotnet}/dotnet
tests=$root/.device/tests/MoeNative.Tests.dll
cli=$root/.device/cli/moenative.dll
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 COLUMNS=${COLUMNS:-160}

counts() { # "N passed, N failed, N skipped" from one runner log
  awk '/^[[:space:]]*failed:[[:space:]]*[0-9]+/ { f = $2 } /^[[:space:]]*succeeded:[[:space:]]*[0-9]+/ { p = $2 }
       /^[[:space:]]*skipped:[[:space:]]*[0-9]+/ { s = $2 }
       END { if (p == "" && f == "") print "no test summary"; else printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$1"
}

case ${1:-} in
  tests)
    declare -A shard=(
      [blocks]="TestCategory=Gpu&FullyQualifiedName~MoeNative.Tests.Blocks."
      [kernels]="TestCategory=Gpu&(FullyQualifiedName~MoeNative.Tests.Ptx.|FullyQualifiedName~MoeNative.Tests.Interop.|FullyQualifiedName~MoeNative.Tests.Reference.|FullyQualifiedName~MoeNative.Tests.Cli.|FullyQualifiedName~MoeNative.Tests.Sanitizer.)"
      [fuzz]="TestCategory=Gpu&FullyQualifiedName~MoeNative.Tests.Fuzz."
    )
    serial=${MOENATIVE_SERIAL_FILTER:-"TestCategory=Gpu&FullyQualifiedName~MoeNative.Tests.Soak."}
    start=$SECONDS
    for name in "${!shard[@]}"; do
      timeout "${MOENATIVE_SHARD_TIMEOUT:-420}" "$dotnet" "$tests" --filter "${shard[$name]}" > "$out/tests-$name.log" 2>&1 &
    done
    wait
    echo "shards done in $((SECONDS - start)) s" >> "$out/summary.txt"
    timeout "${MOENATIVE_SERIAL_TIMEOUT:-150}" "$dotnet" "$tests" --filter "$serial" > "$out/tests-serial.log" 2>&1
    for name in blocks kernels fuzz serial; do
      echo "$name: $(counts "$out/tests-$name.log")" >> "$out/summary.txt"
      grep -E '^failed ' "$out/tests-$name.log" | head -n 40 | sed "s/^/  $name: /" >> "$out/summary.txt"
    done
    echo "all in $((SECONDS - start)) s" >> "$out/summary.txt"
    cat "$out/summary.txt" ;;
  perf)
    base=${2:?usage: integration.sh perf BASE_CLI_DIR}
    {
      for cfg in "qwen3-30b-a3b 1,8,128,1024,4096,16384" "qwen3-235b-a22b 1,8,4096"; do
        set -- $cfg
        echo "== new $1"; "$dotnet" "$cli" bench --config "$1" --seqlen "$2" --backward --no-reference --json "$out/bench-new-$1.json" | grep -E '^  (fused|cublas)' | grep -v ' T='
        echo "== base $1"; "$dotnet" "$base/moenative.dll" bench --config "$1" --seqlen "$2" --backward --no-reference --json "$out/bench-base-$1.json" | grep -E '^  (fused|cublas)' | grep -v ' T='
      done
    } > "$out/perf.log" 2>&1
    "$run" load >/dev/null 2>&1; echo "load exit $?" >> "$out/perf.log"
    cat "$out/perf.log"; grep -E 'loaded|GB/s|host memory|Maximum resident|error' "$out/load.log" | head -n 20 ;;
  *)
    echo "usage: integration.sh tests | perf BASE_CLI_DIR" >&2; exit 2 ;;
esac
