#!/usr/bin/env bash
# pack.sh: build everything a GPU machine without .NET needs, into ONE git-ignored folder (.device/).
#
#   tools/device/pack.sh            # from anywhere; writes <repo>/.device/
#
# Contents (framework-dependent, so the runtime travels once):
#   .device/dotnet.tar.xz   the .NET runtime: dotnet host + shared/Microsoft.NETCore.App (about 27 MB)
#   .device/tests/          `dotnet publish -c Release` of Tests/ (a Microsoft.Testing.Platform executable)
#   .device/cli/            `dotnet publish -c Release` of tools/MoeNative.Cli (moenative.dll)
#   .device/MANIFEST        what was packed, from which commit
# Then on the GPU machine, from the repo root: tools/device/run.sh [all|test|cli|ptx] (see run.sh).
# The device tool carries at most 64 MiB (working tree + carried paths): this script fails above 60 MiB.
#
# Environment: MOENATIVE_PACK_ARTIFACTS (MSBuild artifacts path, default /tmp/moenative-pack),
#              DOTNET_ROOT (runtime to pack, default: the folder of the `dotnet` on PATH).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
pack="$root/.device"
artifacts=${MOENATIVE_PACK_ARTIFACTS:-/tmp/moenative-pack}
limit_mib=60

die() { echo "pack.sh: $*" >&2; exit 1; }

command -v dotnet >/dev/null || die "dotnet is not on PATH (install the .NET 10 SDK)"
dotnet_root=${DOTNET_ROOT:-$(dirname "$(readlink -f "$(command -v dotnet)")")}
[ -x "$dotnet_root/dotnet" ] || die "no dotnet host in $dotnet_root (set DOTNET_ROOT)"

# The runtime version the SDK builds for (the newest Microsoft.NETCore.App 10.x installed).
runtime_version=$(ls "$dotnet_root/shared/Microsoft.NETCore.App" | grep '^10\.' | sort -V | tail -n 1)
[ -n "$runtime_version" ] || die "no Microsoft.NETCore.App 10.x under $dotnet_root/shared"

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

rm -rf "$pack"
mkdir -p "$pack"

publish() { # publish <project> <dest>
  echo "== dotnet publish $1 -> ${2#"$root"/}"
  # linux-x64 only (drops other platforms' native assets), English only (drops satellite resource folders).
  dotnet publish "$root/$1" -c Release -r linux-x64 --no-self-contained -o "$2" \
    --artifacts-path "$artifacts" -p:GenerateDocumentationFile=false -p:SatelliteResourceLanguages=en \
    -nologo -v:q -clp:NoSummary
  # NOTE: MSTest brings the code-coverage collector (~20 MB of profilers); the GPU runs never use --coverage.
  rm -rf "$2/Microsoft.CodeCoverage"
  find "$2" -name '*.xml' -delete
}
publish Tests/MoeNative.Tests.csproj "$pack/tests"
publish tools/MoeNative.Cli/MoeNative.Cli.csproj "$pack/cli"

echo "== runtime $runtime_version from $dotnet_root -> .device/dotnet.tar.xz"
XZ_OPT=${XZ_OPT:--6 -T0} tar -C "$dotnet_root" -cJf "$pack/dotnet.tar.xz" \
  dotnet host "shared/Microsoft.NETCore.App/$runtime_version"

{
  echo "packed:  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit:  $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (+ local changes)')"
  echo "runtime: Microsoft.NETCore.App $runtime_version"
} >"$pack/MANIFEST"

size_kib=$(du -sk "$pack" | cut -f1)
size_mib=$(( (size_kib + 1023) / 1024 ))
du -sh "$pack/dotnet.tar.xz" "$pack/tests" "$pack/cli" | sed 's/^/   /'
if [ "$size_mib" -gt "$limit_mib" ]; then
  die ".device is ${size_mib} MiB, over the ${limit_mib} MiB budget (the device tool carries 64 MiB in all)"
fi
echo "== .device: ${size_mib} MiB (limit ${limit_mib} MiB). On the GPU machine, from the repo root: tools/device/run.sh"
