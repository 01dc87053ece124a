#!/usr/bin/env bash
# ab.sh: A/B bench rows in one device call: every line of a spec file is one `moenative bench` run, by this tree's CLI
# or a base CLI, with its own environment, run one after the other (same machine, same call; compare only inside it).
#
#   tools/device/ab.sh SPEC_FILE
#   SPEC_FILE lines: LABEL | CLI | ENV | BENCH ARGS     ('#' lines and blank lines skipped)
#       CLI   new (this tree's .device/cli) or a folder with a published moenative.dll (e.g. .carry/base-46c)
#       ENV   space-separated NAME=VALUE pairs for that run only, or -
#   e.g.  30b-f+b-new | new | - | --config qwen3-30b-a3b --seqlen 1,8,64 --backward --no-reference
#   A literal $OUT in BENCH ARGS or ENV becomes the output folder (e.g. --json $OUT/new.json, or
#   MOENATIVE_BENCH_BREAKDOWN=$OUT/breakdown-x.txt, comes back with the call).
#
# Needs .device/ (tools/device/pack.sh). Prints the fused/cublas rows of every run under its label to stdout and to
# $OUT/ab.log (else artifacts/device); MOENATIVE_AB_TIMEOUT (60 s) limits each run.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
out=${OUT:-$root/artifacts/device}
spec=${1:?usage: ab.sh SPEC_FILE}
mkdir -p "$out"
device_env ab.sh
trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; echo "${s%"${s##*[![:space:]]}"}"; }
while IFS='|' read -r label cli envs args; do
  label=$(trim "$label"); [[ -z $label || $label == \#* ]] && continue
  cli=$(trim "$cli"); envs=$(trim "$envs"); envs=${envs//\$OUT/$out}; args=$(trim "$args"); args=${args//\$OUT/$out}
  dll=$(cli_dll "$cli")
  [ "$envs" = - ] && envs=
  echo "== $label ($cli${envs:+, $envs})"
  # shellcheck disable=SC2086
  env $envs timeout "${MOENATIVE_AB_TIMEOUT:-60}" "$dotnet" "$dll" bench $args 2>&1 | grep -E '^  (fused|cublas)|error|Error'
done < "$spec" | tee "$out/ab.log"
