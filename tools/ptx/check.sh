#!/usr/bin/env bash
# check.sh: assemble every specialised PTX module with `ptxas -v` for each target architecture and print one table
# row per (module, entry, arch): registers, static shared memory (dynamic shared memory is chosen at launch and
# is not in the table), stack frame, spill stores/loads.
# Modules whose text says `.target sm_90a` (the Hopper kernels: wgmma, TMA, setmaxnreg) assemble for sm_90a only, and
# their SASS must show HGMMA (every sm_90a module) and UTMALDG (the row-tiled grouped GEMMs, which load W through TMA;
# the TN weight-gradient kernel loads both operands by cp.async).
# Modules whose text says `.target sm_90` (the decode kernels' programmatic-dependent-launch specialisations)
# assemble for the sm_90* archs only.
# Exit status: 0 when everything assembles with no spills; 1 on any ptxas error or spill; 2 on usage errors
# (no ptxas: one line saying where it looked, before anything is dumped or written). Temp files are removed on
# every exit.
#
#   tools/ptx/check.sh DIR        DIR holds the specialised modules, one .ptx each (moenative ptx dump --output DIR)
#   tools/ptx/check.sh            dumps them first into a temp folder through the CLI (see MOENATIVE_CLI below)
#
# Environment:
#   PTXAS          ptxas to use (default: ptxas on PATH, then the first executable of PTXAS_SEARCH)
#   PTXAS_SEARCH   where else to look (default "/usr/local/cuda/bin/ptxas /opt/cuda124/usr/bin/ptxas"; empty: nowhere)
#   ARCHS          architectures (default "sm_80 sm_90a"); an arch this ptxas does not know (CUDA 11.8 has no
#                  sm_90a) falls back to the same number without the suffix (sm_90), with a note.
#   MOENATIVE_CLI  command that runs the CLI (default: `moenative` on PATH, else
#                  `dotnet run --project tools/MoeNative.Cli --`), used only when DIR is not given.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
die() { echo "check.sh: $*" >&2; exit 2; }
# Everything this script creates is listed here and removed on any exit (die included).
temps=()
trap 'rm -rf "${temps[@]}"' EXIT

# NOTE: found in this shell, not in $(...): a `die` inside a command substitution would only leave the subshell.
ptxas=""
if [ -n "${PTXAS:-}" ]; then
  [ -x "$PTXAS" ] || die "PTXAS=$PTXAS is not executable"
  ptxas=$PTXAS
else
  search=${PTXAS_SEARCH-/usr/local/cuda/bin/ptxas /opt/cuda124/usr/bin/ptxas}
  for c in "$(command -v ptxas 2>/dev/null)" $search; do
    [ -n "$c" ] && [ -x "$c" ] && { ptxas=$c; break; }
  done
  [ -n "$ptxas" ] || die "no ptxas found (looked on PATH${search:+ and at $search}): install the CUDA toolkit's ptxas or set PTXAS=/path/to/ptxas"
fi

dir=${1:-}
if [ -z "$dir" ]; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/moenative-ptx-check.XXXX")
  temps+=("$dir")
  if [ -n "${MOENATIVE_CLI:-}" ]; then cli=($MOENATIVE_CLI)
  elif command -v moenative >/dev/null; then cli=(moenative)
  else cli=(dotnet run --project "$root/tools/MoeNative.Cli" --); fi
  echo "dumping the PTX catalog with: ${cli[*]} ptx dump --output $dir"
  "${cli[@]}" ptx dump --output "$dir" >/dev/null || die "ptx dump failed"
fi
[ -d "$dir" ] || die "no such folder: $dir"
shopt -s nullglob
files=("$dir"/*.ptx)
[ ${#files[@]} -gt 0 ] || die "no .ptx files in $dir"

# Resolve each requested arch against this ptxas.
probe=$(mktemp "${TMPDIR:-/tmp}/moenative-probe.XXXX.ptx")
temps+=("$probe")
printf '.version 7.8\n.target sm_80\n.address_size 64\n.visible .entry probe() { ret; }\n' > "$probe"
archs=()
for a in ${ARCHS:-sm_80 sm_90a}; do
  if "$ptxas" -arch="$a" "$probe" -o /dev/null 2>/dev/null; then archs+=("$a")
  else
    b=${a%a}
    if [ "$b" != "$a" ] && "$ptxas" -arch="$b" "$probe" -o /dev/null 2>/dev/null; then
      echo "note: $("$ptxas" --version | tail -n 1 | sed 's/^Cuda compilation tools, //') cannot target $a; using $b"
      archs+=("$b")
    else die "ptxas cannot target $a"; fi
  fi
done

echo "ptxas: $ptxas ($("$ptxas" --version | tail -n 1))"
printf '%-60s %-48s %-6s %5s %7s %6s %8s %8s\n' module entry arch regs smem stack spill_st spill_ld
printf '%.0s-' {1..156}; echo
failures=0
for f in "${files[@]}"; do
  module=$(basename "$f" .ptx)
  file_archs=("${archs[@]}")
  hopper=0
  if grep -q '^\.target sm_90a' "$f"; then
    hopper=1; file_archs=()
    for a in "${archs[@]}"; do [[ $a == sm_90* ]] && file_archs+=("$a"); done
    [ ${#file_archs[@]} -gt 0 ] || { echo "$module: an sm_90a module, but ARCHS has no sm_90a"; continue; }
  elif grep -q '^\.target sm_90$' "$f"; then
    # sm_90 modules (griddepcontrol: programmatic dependent launch) assemble for sm_90 / sm_90a only, no HGMMA check
    file_archs=()
    for a in "${archs[@]}"; do [[ $a == sm_90* ]] && file_archs+=("$a"); done
    [ ${#file_archs[@]} -gt 0 ] || { echo "$module: an sm_90 module, but ARCHS has no sm_90*"; continue; }
  fi
  for a in "${file_archs[@]}"; do
    if [ $hopper = 1 ]; then
      cubin=$(mktemp --suffix=.cubin "${TMPDIR:-/tmp}/moenative-sm90a.XXXXXX")
      log=$("$ptxas" -arch="$a" -v "$f" -o "$cubin" 2>&1); rc=$?
      if [ $rc -eq 0 ]; then
        cuobjdump=$(dirname "$ptxas")/cuobjdump
        [ -x "$cuobjdump" ] || cuobjdump=$(command -v cuobjdump || true)
        if [ -n "$cuobjdump" ]; then
          sass=$("$cuobjdump" -sass "$cubin" 2>&1)
          grep -q HGMMA <<<"$sass" || { echo "$module: no HGMMA in the SASS"; failures=$((failures + 1)); }
          if [[ $module == *grouped_gemm_rows* ]] && ! grep -q UTMALDG <<<"$sass"; then
            echo "$module: no UTMALDG in the SASS"; failures=$((failures + 1))
          fi
        else
          echo "note: no cuobjdump beside $ptxas or on PATH: $module's SASS not checked"
        fi
      fi
      rm -f "$cubin"
    else
      log=$("$ptxas" -arch="$a" -v "$f" -o /dev/null 2>&1); rc=$?
    fi
    if [ $rc -ne 0 ]; then
      printf '%-60s %-48s %-6s ptxas FAILED (exit %d)\n' "$module" "-" "$a" "$rc"
      echo "$log" | grep -iE "error|fatal" | head -n 20 | sed 's/^/    /'
      failures=$((failures + 1)); continue
    fi
    rows=$(echo "$log" | awk -v module="$module" -v arch="$a" '
      /Compiling entry function/ { match($0, /function .[^'"'"']+/); entry = substr($0, RSTART + 10, RLENGTH - 10) }
      /Function properties for/ { if (entry == "") { n = split($0, w, " "); entry = w[n] } }
      /bytes stack frame/ { stack = $1; spst = $5; spld = $9 }
      /Used [0-9]+ registers/ {
        match($0, /Used [0-9]+ registers/); regs = substr($0, RSTART + 5, RLENGTH - 15)
        smem = 0; if (match($0, /[0-9]+ bytes smem/)) smem = substr($0, RSTART, RLENGTH - 11)
        bad = (spst + 0 > 0 || spld + 0 > 0) ? "  <-- SPILLS" : ((stack + 0 > 0) ? "  (stack frame)" : "")
        printf "%-60s %-48s %-6s %5s %7s %6s %8s %8s%s\n", module, entry, arch, regs, smem, stack, spst, spld, bad
        entry = ""; stack = 0; spst = 0; spld = 0
      }')
    [ -n "$rows" ] || { printf '%-60s %-48s %-6s no entries reported\n' "$module" "-" "$a"; failures=$((failures + 1)); continue; }
    echo "$rows"
    echo "$rows" | grep -q "SPILLS" && failures=$((failures + 1))
  done
done
echo
if [ $failures -ne 0 ]; then echo "check.sh: $failures module/arch combinations failed (errors or spills)"; exit 1; fi
echo "check.sh: ${#files[@]} modules x ${#archs[@]} archs assembled, no spills"
