#!/usr/bin/env bash
# hopper.sh: one device round of the sm_90a work, from what tools/device/pack.sh put in .device/ (found relative to
# this script, so a copy under any folder works). Every step is time-boxed so a hung kernel cannot eat the round.
#
#   tools/device/hopper.sh [TEST_FILTER] [BENCH_SEQLENS] [SUITE_FILTER] [BLOCK_SEQLENS]
#
# Steps (logs under $OUT, else ./artifacts/device; at most 7 files: probe.log kernels.log bench.log gemm.json suite.log
# block-sm80.json block.json): info; ptxas -v + SASS check of the sm_90a modules (check.sh);
# the layout probe tests; the tests matching TEST_FILTER (default FullyQualifiedName~Sm90aGroupedGemm); when they
# pass, `bench --gemm` at BENCH_SEQLENS (default 1024,4096,16384; none = skip) with JSON; then the GPU tests matching
# SUITE_FILTER (default none = skip); then the block bench fwd+bwd at BLOCK_SEQLENS (default none) twice in this
# call, MOENATIVE_FORCE_SM80=1 first, then the default dispatch. Prints a summary last.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
pack="$root/.device"
out=${OUT:-$root/artifacts/device}
filter=${1:-FullyQualifiedName~Sm90aGroupedGemm}
seqlens=${2:-1024,4096,16384}
suite=${3:-none}
blocks=${4:-none}
mkdir -p "$out"
[ -f "$pack/dotnet.tar.xz" ] || { echo "hopper.sh: no $pack/dotnet.tar.xz"; exit 2; }
DOTNET_ROOT=/tmp/moenative-dotnet
if [ ! -x "$DOTNET_ROOT/dotnet" ]; then mkdir -p "$DOTNET_ROOT" && tar -C "$DOTNET_ROOT" -xJf "$pack/dotnet.tar.xz"; fi
export DOTNET_ROOT PATH="$DOTNET_ROOT:$PATH:/usr/local/cuda/bin" DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
dotnet=$DOTNET_ROOT/dotnet
cli() { "$dotnet" "$pack/cli/moenative.dll" "$@"; }
tests() { # tests NAME TIMEOUT FILTER
  timeout "$2" "$dotnet" "$pack/tests/MoeNative.Tests.dll" --filter "$3" 2>&1 | tee "$out/$1.log" | grep -E "^failed|^  Assert|Assert\.|total:|succeeded:|failed:|skipped:" | head -n 40
  return "${PIPESTATUS[0]}"
}
declare -A rc
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
cli info 2>&1 | grep -iE "GPU|compute|grouped"
dump=$(mktemp -d /tmp/h8-ptx.XXXX); sel=$(mktemp -d /tmp/h8-sel.XXXX)
cli ptx dump --output "$dump" >/dev/null && cp "$dump"/*Sm90a* "$sel"/
ARCHS="sm_90a" "$root/tools/ptx/check.sh" "$sel" >"$sel/ptx.log" 2>&1; rc[ptx]=$?
tail -n 4 "$sel/ptx.log"
echo "== probe"; tests probe 120 "FullyQualifiedName~Sm90aLayoutProbe"; rc[probe]=$?
echo "== $filter"; tests kernels 300 "$filter"; rc[kernels]=$?
if [ "${rc[kernels]}" = 0 ] && [ "$seqlens" != none ]; then
  echo "== bench --gemm"
  timeout 200 "$dotnet" "$pack/cli/moenative.dll" bench --gemm --seqlen "$seqlens" --json "$out/gemm.json" 2>&1 | tee "$out/bench.log"; rc[bench]=${PIPESTATUS[0]}
fi
if [ "$suite" != none ]; then
  echo "== suite $suite"; tests suite 420 "($suite)&TestCategory=Gpu"; rc[suite]=$?
fi
if [ "$blocks" != none ]; then
  echo "== block bench, sm80 forced"
  MOENATIVE_FORCE_SM80=1 timeout 150 "$dotnet" "$pack/cli/moenative.dll" bench --seqlen "$blocks" --backward --no-reference --json "$out/block-sm80.json" 2>&1 | tail -n 14; rc[block80]=${PIPESTATUS[0]}
  echo "== block bench, default (sm90a where it exists)"
  timeout 150 "$dotnet" "$pack/cli/moenative.dll" bench --seqlen "$blocks" --backward --no-reference --json "$out/block.json" 2>&1 | tail -n 14; rc[block]=${PIPESTATUS[0]}
fi
echo "== summary"; for k in "${!rc[@]}"; do echo "$k: exit ${rc[$k]}"; done
