#!/usr/bin/env bash
# run.sh: run MoeNative on a GPU machine that has no .NET, from what tools/device/pack.sh put in .device/.
# Run it from the repo root (the working tree plus .device/ must be there).
#
#   tools/device/run.sh [all]                 ptx check, GPU tests, verify on the GPU, bench; summary at the end
#   tools/device/run.sh test [--all] [ARGS]   the Gpu test category (--all: every test); ARGS go to the
#                                             Microsoft.Testing.Platform runner (e.g. --filter "FullyQualifiedName~Blocks")
#   tools/device/run.sh cli ARGS              the CLI: e.g. cli info | cli verify --device gpu | cli bench ...
#   tools/device/run.sh ptx                   dump every PTX specialisation and run tools/ptx/check.sh with this box's ptxas
#
# Logs, TRX and JSON go to $OUT when it is set (the device tool brings that folder back), else ./artifacts/device.
# At most 8 files are written there: summary.txt, ptx.log, tests.log, tests.trx, verify.log, bench.log, bench.json,
# cli.log.
# Environment for `all`: MOENATIVE_STEPS (default "ptx tests verify bench": the steps to run, in that order),
#   MOENATIVE_VERIFY_ARGS (default "--device gpu"),
#   MOENATIVE_BENCH_ARGS (default "--config qwen3-30b-a3b --seqlen 1,128,1024,4096,16384 --backward").
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
pack="$root/.device"
out=${OUT:-$root/artifacts/device}

die() { echo "run.sh: $*" >&2; exit 2; }

case ${1:-} in
  -h|--help|help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac

[ -f "$pack/dotnet.tar.xz" ] || die "no .device/dotnet.tar.xz here: run tools/device/pack.sh on the build machine and carry .device"
mkdir -p "$out"

# ---- runtime: unpack once per machine into a temp folder --------------------------------------------------
DOTNET_ROOT=${MOENATIVE_DOTNET_ROOT:-/tmp/moenative-dotnet}
if [ ! -x "$DOTNET_ROOT/dotnet" ] || [ "$pack/dotnet.tar.xz" -nt "$DOTNET_ROOT/.unpacked" ]; then
  rm -rf "$DOTNET_ROOT" && mkdir -p "$DOTNET_ROOT"
  tar -C "$DOTNET_ROOT" -xJf "$pack/dotnet.tar.xz" || die "could not unpack the runtime into $DOTNET_ROOT"
  touch "$DOTNET_ROOT/.unpacked"
fi
export DOTNET_ROOT PATH="$DOTNET_ROOT:$PATH"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
export COLUMNS=${COLUMNS:-160}   # Spectre tables: wide enough when stdout is a pipe
dotnet=$DOTNET_ROOT/dotnet

# ---- the card ----------------------------------------------------------------------------------------------
if command -v nvidia-smi >/dev/null; then
  card=$(nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version --format=csv,noheader 2>&1 | head -n 8)
else
  card="nvidia-smi not found"
fi
echo "card: $card"
[ -f "$pack/MANIFEST" ] && sed 's/^/pack: /' "$pack/MANIFEST"

# ---- steps -------------------------------------------------------------------------------------------------
cli() { "$dotnet" "$pack/cli/moenative.dll" "$@"; }

# Counts "N passed, N failed, N skipped" from the runner's own summary (total/failed/succeeded/skipped lines).
test_counts() {
  awk '
    /^[[:space:]]*failed:[[:space:]]*[0-9]+/    { f = $2 }
    /^[[:space:]]*succeeded:[[:space:]]*[0-9]+/ { p = $2 }
    /^[[:space:]]*skipped:[[:space:]]*[0-9]+/   { s = $2 }
    END { if (p == "" && f == "") print "no test summary"; else printf "%d passed, %d failed, %d skipped\n", p, f, s }
  ' "$1"
}

run_tests() { # run_tests [--all] [MTP args]; writes tests.log + tests.trx
  local filter=(--filter "TestCategory=Gpu") args=()
  for a in "$@"; do
    case $a in
      --all) filter=() ;;
      --filter|--filter=*) filter=(); args+=("$a") ;;
      *) args+=("$a") ;;
    esac
  done
  set -o pipefail
  "$dotnet" "$pack/tests/MoeNative.Tests.dll" "${filter[@]}" \
    --results-directory "$out" --report-trx --report-trx-filename tests.trx \
    "${args[@]}" 2>&1 | tee "$out/tests.log"
  local rc=${PIPESTATUS[0]}
  echo "tests: $(test_counts "$out/tests.log") (exit $rc)"
  return "$rc"
}

run_ptx() { # writes ptx.log
  local dir
  dir=$(mktemp -d /tmp/moenative-ptx.XXXX)
  {
    export PATH="$PATH:/usr/local/cuda/bin"   # the box's CUDA 13 ptxas; check.sh also looks in the usual places
    cli ptx dump --output "$dir" >/dev/null || { echo "moenative ptx dump failed"; exit 1; }
    echo "dumped $(ls "$dir" | wc -l) PTX modules"
    [ -x "$root/tools/ptx/check.sh" ] || { echo "tools/ptx/check.sh is missing"; exit 1; }
    "$root/tools/ptx/check.sh" "$dir"
  } 2>&1 | tee "$out/ptx.log"
  return "${PIPESTATUS[0]}"
}

mode=${1:-all}
[ $# -gt 0 ] && shift
case $mode in
  test)
    run_tests "$@"; exit $? ;;
  cli)
    [ $# -gt 0 ] || die "usage: tools/device/run.sh cli <command> [options]   (e.g. cli info)"
    cli "$@" 2>&1 | tee "$out/cli.log"; exit "${PIPESTATUS[0]}" ;;
  ptx)
    run_ptx; exit $? ;;
  all)
    declare -A rc
    steps=" ${MOENATIVE_STEPS:-ptx tests verify bench} "
    if [[ $steps == *" ptx "* ]]; then
      echo "== ptx check"; run_ptx; rc[ptx]=$?
    fi
    if [[ $steps == *" tests "* ]]; then
      echo "== GPU tests"; run_tests "$@"; rc[tests]=$?
    fi
    if [[ $steps == *" verify "* ]]; then
      echo "== verify"
      # shellcheck disable=SC2086 # the *_ARGS variables are word lists on purpose
      cli verify ${MOENATIVE_VERIFY_ARGS:---device gpu} 2>&1 | tee "$out/verify.log"; rc[verify]=${PIPESTATUS[0]}
    fi
    if [[ $steps == *" bench "* ]]; then
      echo "== bench"
      # shellcheck disable=SC2086
      cli bench ${MOENATIVE_BENCH_ARGS:---config qwen3-30b-a3b --seqlen 1,128,1024,4096,16384 --backward} \
        --json "$out/bench.json" 2>&1 | tee "$out/bench.log"; rc[bench]=${PIPESTATUS[0]}
    fi
    verdict() { [ "$1" = 0 ] && echo "$2" || echo "FAILED (exit $1)"; }
    {
      echo "== summary"
      echo "card:   $card"
      [ -n "${rc[ptx]:-}" ] && echo "ptx:    $(verdict "${rc[ptx]}" ok)"
      [ -n "${rc[tests]:-}" ] && echo "tests:  $(test_counts "$out/tests.log") (exit ${rc[tests]})"
      [ -n "${rc[verify]:-}" ] && echo "verify: $(verdict "${rc[verify]}" pass)"
      [ -n "${rc[bench]:-}" ] && echo "bench:  $(verdict "${rc[bench]}" ok)"
      [ -f "$out/bench.log" ] && [ -n "${rc[bench]:-}" ] && grep -E '^  (fused|grouped|reference|cublas)' "$out/bench.log" | head -n 24
    } | tee "$out/summary.txt"
    for k in "${!rc[@]}"; do [ "${rc[$k]}" = 0 ] || exit 1; done
    exit 0 ;;
  *)
    die "unknown mode '$mode' (all | test | cli | ptx)" ;;
esac
