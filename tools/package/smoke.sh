#!/usr/bin/env bash
# smoke.sh: pack every package, check each one's metadata, install the `moenative` tool from the packed folder into
# a temporary tool path and run `moenative info` from there. Exit 0 when all of that works, 1 otherwise.
#
#   tools/package/smoke.sh [OUT_DIR]    packages go to OUT_DIR (default: a temp folder, removed at the end)
#
# Checked per package (on the nuspec that pack wrote under obj/Release): a .snupkg beside the .nupkg, README.md
# packed and named as the readme, a license expression, the shared version, a description that is not the SDK
# default; the CLI packed as a DotnetTool. The tool is installed with a NuGet config that knows
# only the packed folder, so what runs is what was packed (never a package of the same name from a feed).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
fail() { echo "smoke.sh: $*" >&2; exit 1; }
command -v dotnet >/dev/null || fail "dotnet not found: the .NET 10 SDK is required"

work=$(mktemp -d /tmp/moenative-package.XXXXXX)
trap 'rm -rf "$work"' EXIT
out=${1:-$work/packages}
mkdir -p "$out"

version=$(dotnet msbuild "$root/Interop/MoeNative.Interop.csproj" -getProperty:Version) || fail "cannot read the version"
echo "packing MoeNative $version -> $out"
dotnet pack "$root/MoeNative.sln" -c Release -o "$out" -v:q -nologo -p:ContinuousIntegrationBuild=true \
  || fail "dotnet pack failed"

declare -A project=([MoeNative.Interop]=Interop [MoeNative.Ptx]=Ptx [MoeNative.Reference]=Reference
  [MoeNative.Blocks]=Blocks [MoeNative.Cli]=tools/MoeNative.Cli)
expected=(MoeNative.Interop MoeNative.Ptx MoeNative.Reference MoeNative.Blocks MoeNative.Cli)
for id in "${expected[@]}"; do
  [ -f "$out/$id.$version.nupkg" ] || fail "$id: no $id.$version.nupkg in $out"
  [ -f "$out/$id.$version.snupkg" ] || fail "$id: no symbols package $id.$version.snupkg"
  nuspec=$(cat "$root/${project[$id]}/obj/Release/$id.$version.nuspec") || fail "$id: no nuspec written by pack"
  grep -q 'target="/README.md"' <<<"$nuspec" || fail "$id: README.md not packed"
  grep -q '<readme>README.md</readme>' <<<"$nuspec" || fail "$id: README.md not named as the package readme"
  grep -q '<license type="expression">' <<<"$nuspec" || fail "$id: no license expression"
  grep -q '<description>Package Description</description>' <<<"$nuspec" && fail "$id: default description"
  grep -q "<version>$version</version>" <<<"$nuspec" || fail "$id: version is not $version"
done
extra=$(find "$out" -name '*.nupkg' | grep -v -E "/($(IFS='|'; echo "${expected[*]}"))\.$version\.nupkg$")
[ -z "$extra" ] || fail "unexpected packages: $extra"
grep -q '<packageType name="DotnetTool" />' "$root/tools/MoeNative.Cli/obj/Release/MoeNative.Cli.$version.nuspec" \
  || fail "MoeNative.Cli is not a tool package"
echo "5 packages + symbols, metadata ok"

cat > "$work/nuget.config" <<CONFIG
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="packed" value="$out" />
  </packageSources>
</configuration>
CONFIG
# NUGET_PACKAGES: a private package cache, so a package of the same version installed earlier is never reused.
NUGET_PACKAGES="$work/nuget-cache" dotnet tool install MoeNative.Cli --version "$version" --tool-path "$work/tool" --configfile "$work/nuget.config" \
  || fail "dotnet tool install from $out failed"
"$work/tool/moenative" info || fail "the installed moenative info failed"
echo "smoke.sh: tool MoeNative.Cli $version installed from the packed folder; moenative info ran"
