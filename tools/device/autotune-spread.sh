#!/usr/bin/env bash
# autotune-spread.sh: how much the block's numbers move between processes of one CLI (autotune decides per process):
# RUNS fresh processes of each CLI, one after the other, each `bench --backward` with autotune and graph replay, and
# per run the fused medians and the tiles autotune kept. MOENATIVE_SPREAD_ARGS: the bench's mode (default --backward;
# e.g. --inference for the serving forward).
#
#   tools/device/autotune-spread.sh CONFIG SEQLENS RUNS CLI...
#       CLI  new (this tree's .device/cli) or a folder with a published moenative.dll (e.g. .carry/base-672)
# Writes spread.txt (the summary, also printed) to $OUT, else ./artifacts/device; MOENATIVE_SPREAD_TIMEOUT (90 s) per run.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
out=${OUT:-$root/artifacts/device}
config=${1:?usage: autotune-spread.sh CONFIG SEQLENS RUNS CLI...}; seqlens=$2; runs=$3; shift 3
mkdir -p "$out"
device_env autotune-spread.sh
tmp=$(mktemp -d)
for run in $(seq 1 "$runs"); do
  for cli in "$@"; do
    dll=$(cli_dll "$cli")
    timeout "${MOENATIVE_SPREAD_TIMEOUT:-90}" "$dotnet" "$dll" bench --config "$config" --seqlen "$seqlens" ${MOENATIVE_SPREAD_ARGS:---backward} \
      --no-reference --json "$tmp/run.json" > /dev/null 2>&1
    python3 - "$tmp/run.json" "$cli" "$run" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"{sys.argv[2]} run {sys.argv[3]}: no JSON ({e})"); sys.exit(0)
rows = " ".join(f"{r['tokens']}/{r['pass']}={r['median_ms']:.3f}" for r in d["rows"] if r["impl"] == "fused")
picks = " ".join(c.replace("sm90a_", "").replace("_w12", "").replace(" T=", "@").replace(": ", "=")
                 for c in d.get("autotune_choices", []) if c.split(" ")[0] in ("FirstForward", "SecondForward", "FirstBackwardData", "SecondBackwardData"))
print(f"{sys.argv[2]} run {sys.argv[3]}: {rows} | {picks}")
PY
    rm -f "$tmp/run.json"
  done
done | tee "$out/spread.txt"
rm -rf "$tmp"
