#!/usr/bin/env bash
# Builds FerretDB v1.24.0 from the Go module proxy once and prints the binary's path.
# FerretDB's build reads build/version/version.txt, which the module zip does not carry, so
# `go build pkg@version` fails; we copy the module source out of the cache and write that file.
#   ferretdb.sh         build if needed, print the path
#   ferretdb.sh --path  print the path only
#
# One line of it is changed (the build is named -idindex for it): its SQLite backend finds a document by
# _id with `_ferretdb_sjson->'$._id' = ?` while the unique index it keeps on _id is on
# `_ferretdb_sjson->"_id"`, the same value written another way. SQLite uses an index on an expression only
# for that expression, so every find, update and delete by _id read and parsed every document of the
# collection (about 8 ms at 1,000 jobs, 30 ms at 3,000, per statement; an update or delete is two). Written
# as the index is, they search the index (about 1 ms whatever the size). The results are the same.
set -euo pipefail

version=v1.24.0
cache=${CLOVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clover}
bin="$cache/ferretdb-$version-idindex/ferretdb"

if [ "${1:-}" = "--path" ]; then echo "$bin"; exit 0; fi
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

echo "ferretdb: building $version into $bin (once)" >&2
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
(
  cd "$work"
  go mod init scratch >/dev/null 2>&1
  GOFLAGS=-mod=mod go mod download -json "github.com/FerretDB/FerretDB@$version" > dl.json
)
dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' "$work/dl.json")
[ -d "$dir" ] || { echo "ferretdb: module source not found in cache" >&2; exit 1; }
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
echo "$version" > "$work/src/build/version/version.txt"
meta="$work/src/internal/backends/sqlite/metadata/metadata.go"
sed -i "s|IDColumn = DefaultColumn + \"->'\$._id'\"|IDColumn = DefaultColumn + \`->\"_id\"\`|" "$meta"
grep -q 'IDColumn = DefaultColumn + `->"_id"`' "$meta" || { echo "ferretdb: the _id expression to change was not found" >&2; exit 1; }
mkdir -p "$(dirname "$bin")"
(cd "$work/src" && CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" ./cmd/ferretdb)
mv "$bin.tmp" "$bin"
echo "$bin"
