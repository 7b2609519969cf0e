#!/usr/bin/env bash
# Re-vendors the admin console's browser libraries into admin/static/vendor/, which is committed and embedded
# with go:embed: the build never runs this, needs no Node and fetches nothing. Run it by hand to change a
# version, review the diff (VERSIONS and each LICENSE too), commit.
#
# Each package is pinned by version and by the sha512 integrity of its npm tarball: a tarball that no longer
# matches its pin is refused, so re-running the script reproduces the committed files or fails. To upgrade,
# change both in PINS (`npm view NAME@VERSION dist.integrity`).
#
# Everything under admin/static/vendor/ is written by this script: it is rebuilt whole, so a version
# dropped from PINS leaves no files behind. Needs npm (and node, which npm runs on), tar and sha256sum.
set -euo pipefail

# name version integrity files-from-the-tarball (besides LICENSE, which every package must have)
PINS=(
  "htmx.org 2.0.11 sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA== dist/htmx.min.js"
  "htmx-ext-sse 2.2.4 sha512-LJmxVhykyflBWgh5PvbRidcyuqMHlgfajmmzumvKctv9puvsufeH6OaejSMZTNTnEI8O2wXXn4ZZtBdpEMqmEQ== dist/sse.min.js"
  "uplot 1.6.32 sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw== dist/uPlot.iife.min.js dist/uPlot.min.css"
)

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/admin/static/vendor"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A cache of our own, so that a tarball npm cached elsewhere under the same integrity is not what we check.
export npm_config_cache="$tmp/cache"
mkdir -p "$tmp/tgz" "$tmp/out"

versions="$tmp/out/VERSIONS"
{
  echo "# Written by scripts/vendor-ui.sh; do not edit. One line per vendored file:"
  echo "# name version npm-tarball-integrity file sha256"
} >"$versions"

for pin in "${PINS[@]}"; do
  read -r name version want files <<<"$pin"
  json=$(npm pack --json --ignore-scripts --pack-destination "$tmp/tgz" "$name@$version") ||
    { echo "vendor-ui: npm pack $name@$version failed" >&2; exit 1; }
  # npm reports the integrity the registry published; the tarball's own hash must say the same.
  reported=$(node -e 'const p = JSON.parse(process.argv[1])[0]; console.log(p.integrity + " " + p.filename)' "$json")
  read -r integrity filename <<<"$reported"
  tgz="$tmp/tgz/$filename"
  actual="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  if [ "$integrity" != "$want" ] || [ "$actual" != "$want" ]; then
    echo "vendor-ui: $name@$version: integrity is $actual (npm says $integrity), pinned $want" >&2
    exit 1
  fi

  dir="$tmp/out/$name-$version"
  mkdir -p "$dir"
  for f in LICENSE $files; do
    tar -xzf "$tgz" -C "$tmp" "package/$f" || { echo "vendor-ui: $name@$version has no $f" >&2; exit 1; }
    mv "$tmp/package/$f" "$dir/$(basename "$f")"
    chmod 0644 "$dir/$(basename "$f")"
    sum=$(sha256sum "$dir/$(basename "$f")" | cut -d' ' -f1)
    echo "$name $version $integrity $name-$version/$(basename "$f") $sum" >>"$versions"
  done
  rm -rf "$tmp/package"
done

rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$tmp/out" "$dest"
chmod 0755 "$dest" "$dest"/*/
echo "vendor-ui: wrote $dest:"
grep -v '^#' "$dest/VERSIONS" | awk '{print "  " $4}'
