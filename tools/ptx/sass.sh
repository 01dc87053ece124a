#!/usr/bin/env bash
# sass.sh: SASS of one kernel (ptxas -> cubin -> cuobjdump -sass), written to a file, plus a count of the
# instructions that tell whether a kernel does what its header claims:
#   HMMA (tensor-core mma), LDGSTS (cp.async), LDSM (ldmatrix), LDL/STL (local memory: must be 0),
#   and for context LDG/STG/LDS/STS, BAR, SHFL, MUFU.
#
#   tools/ptx/sass.sh KERNEL [DIR]
#     KERNEL  an .entry name, e.g. moe_router_softmax_topk_bf16 (the module defining it is found by grep)
#     DIR     folder of specialised modules (moenative ptx dump --output DIR); default: dump through the CLI
#
# Environment: PTXAS and PTXAS_SEARCH (as in check.sh), CUOBJDUMP (default: next to ptxas, then on PATH),
#              ARCH (default sm_90a; falls back to sm_90 when this ptxas cannot target sm_90a),
#              OUT (default /tmp/moenative-sass/KERNEL.ARCH.sass), MOENATIVE_CLI (as in check.sh).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
die() { echo "sass.sh: $*" >&2; exit 2; }
temps=()
trap 'rm -rf "${temps[@]}"' EXIT   # the dump folder, the cubin and the ptxas log, on any exit
[ $# -ge 1 ] || die "usage: tools/ptx/sass.sh KERNEL [DIR]"
kernel=$1
dir=${2:-}

if [ -n "${PTXAS:-}" ]; then ptxas=$PTXAS
else
  ptxas=""
  for c in "$(command -v ptxas 2>/dev/null)" ${PTXAS_SEARCH-/usr/local/cuda/bin/ptxas /opt/cuda124/usr/bin/ptxas}; do
    [ -n "$c" ] && [ -x "$c" ] && { ptxas=$c; break; }
  done
fi
[ -n "$ptxas" ] && [ -x "$ptxas" ] || die "no ptxas found: put it on PATH or set PTXAS"
cuobjdump=${CUOBJDUMP:-$(dirname "$ptxas")/cuobjdump}
[ -x "$cuobjdump" ] || cuobjdump=$(command -v cuobjdump 2>/dev/null || true)
[ -n "$cuobjdump" ] && [ -x "$cuobjdump" ] || die "no cuobjdump found: set CUOBJDUMP"

if [ -z "$dir" ]; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/moenative-sass-dump.XXXX")
  temps+=("$dir")
  if [ -n "${MOENATIVE_CLI:-}" ]; then cli=($MOENATIVE_CLI)
  elif command -v moenative >/dev/null; then cli=(moenative)
  else cli=(dotnet run --project "$root/tools/MoeNative.Cli" --); fi
  "${cli[@]}" ptx dump --output "$dir" >/dev/null || die "ptx dump failed"
fi
module=$(grep -lE "\.entry[[:space:]]+$kernel[[:space:]]*\(" "$dir"/*.ptx 2>/dev/null | head -n 1)
[ -n "$module" ] || die "no module in $dir defines .entry $kernel (entries: $(grep -ohE '\.entry[[:space:]]+[A-Za-z0-9_]+' "$dir"/*.ptx | awk '{print $2}' | sort | tr '\n' ' '))"

arch=${ARCH:-sm_90a}
cubin=$(mktemp "${TMPDIR:-/tmp}/moenative-sass.XXXX.cubin")
ptxas_log=$(mktemp "${TMPDIR:-/tmp}/moenative-sass-ptxas.XXXX.log")
temps+=("$cubin" "$ptxas_log")
if ! "$ptxas" -arch="$arch" -v "$module" -o "$cubin" 2>"$ptxas_log"; then
  if [ "${arch%a}" != "$arch" ] && "$ptxas" -arch="${arch%a}" -v "$module" -o "$cubin" 2>"$ptxas_log"; then
    echo "note: this ptxas cannot target $arch; using ${arch%a}"; arch=${arch%a}
  else cat "$ptxas_log" >&2; die "ptxas failed on $module"; fi
fi
out=${OUT:-/tmp/moenative-sass/$kernel.$arch.sass}
mkdir -p "$(dirname "$out")"
"$cuobjdump" -sass -fun "$kernel" "$cubin" > "$out" || die "cuobjdump failed"

echo "kernel:  $kernel ($arch), module $(basename "$module")"
echo "ptxas:   $(grep -E "Used [0-9]+ registers|spill" "$ptxas_log" | tr -s ' ' | tr '\n' ' ')"
echo "sass:    $out ($(grep -cE '^\s+/\*[0-9a-f]{4}\*/' "$out") instructions)"
printf '%-8s %6s\n' opcode count
for op in HMMA LDGSTS LDSM LDL STL LDG STG LDS STS BAR SHFL MUFU; do
  n=$(grep -cE "^\s+/\*[0-9a-f]{4}\*/\s+(@!?U?P[0-9T] )?$op(\.|\s)" "$out")
  printf '%-8s %6s\n' "$op" "$n"
done
n_local=$(grep -cE "^\s+/\*[0-9a-f]{4}\*/\s+(@!?U?P[0-9T] )?(LDL|STL)(\.|\s)" "$out")
[ "$n_local" -eq 0 ] || { echo "sass.sh: $kernel uses local memory ($n_local LDL/STL)"; exit 1; }
