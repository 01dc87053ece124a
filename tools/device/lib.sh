# lib.sh: what the device scripts that run a published CLI share; sourced (`. "$(dirname "$0")/lib.sh"`), not run.
#   device_env NAME   unpacks the .NET runtime from .device/ (run.sh cli info; on failure "NAME: ..." and exit 1) and
#                     sets $dotnet, $ncu and the environment of a quiet .NET run (no telemetry, invariant culture,
#                     160 columns, the CUDA tools on PATH)
#   cli_dll CLI       the moenative.dll of CLI: new = this tree's .device/cli, else a folder under the repo root with a
#                     published moenative.dll (e.g. .carry/base-672)
# Sets $root (the repository root) when sourced.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

device_env() {
  "$root/tools/device/run.sh" cli info > /dev/null 2>&1 || { echo "$1: run.sh cli info failed"; exit 1; }
  dotnet=${MOENATIVE_DOTNET_ROOT:-/tmp/moenative-dotnet}/dotnet
  export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 COLUMNS=${COLUMNS:-160} \
    PATH="$PATH:/usr/local/cuda/bin"
  ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
}

cli_dll() {
  if [ "$1" = new ]; then echo "$root/.device/cli/moenative.dll"; else echo "$root/$1/moenative.dll"; fi
}
