#!/usr/bin/env bash
# Builds dist/clover_<version>_<arch>.deb with dpkg-deb: the clover binary, systemd units for the server,
# the client and the monitor, default configuration under /etc/clover (conffiles), and maintainer scripts
# that make the clover user and, on first install, the cluster's keys.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=$(dpkg --print-architecture)
version=${CLOVER_VERSION:-0.1.0+git$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/clover_${version}_${arch}"
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/clover" "$pkg/usr/share/doc/clover"
CGO_ENABLED=1 ${GO:-go} build -trimpath -ldflags "-s -w" -o "$pkg/usr/bin/clover" ./cmd/clover
install -m 0644 packaging/systemd/*.service "$pkg/lib/systemd/system/"
install -m 0644 packaging/etc/server.yaml packaging/etc/client.yaml "$pkg/etc/clover/"
install -m 0640 packaging/etc/monitor.env "$pkg/etc/clover/"
install -m 0644 README.md "$pkg/usr/share/doc/clover/README.md"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$pkg/DEBIAN/"
install -m 0644 packaging/debian/conffiles "$pkg/DEBIAN/"
size=$(du -sk "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<CTRL
Package: clover
Version: $version
Architecture: $arch
Maintainer: Clover developers <clover@example.com>
Installed-Size: $size
Depends: libzmq5, adduser, libc6
Section: admin
Priority: optional
Homepage: https://github.com/clover-sched/clover
Description: distributed, highly available job scheduler
 Clover servers elect a leader through ZooKeeper and fire jobs; clients run them
 (shell commands or Go handlers) and report over ZeroMQ (CURVE); state lives in
 MongoDB. Systemd units for the server, the client and the monitor.
CTRL
mkdir -p dist
dpkg-deb --root-owner-group --build "$pkg" "dist/clover_${version}_${arch}.deb" >/dev/null
echo "dist/clover_${version}_${arch}.deb"
