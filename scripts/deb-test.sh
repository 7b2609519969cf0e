#!/usr/bin/env bash
# Builds the Debian package, installs it on this machine, checks what it installed (files, the clover
# user, the keys made on first install, the units as systemd reads them where systemd-analyze exists),
# then removes and purges it and checks that nothing is left. Needs root (dpkg).
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "deb-test: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
if dpkg -s clover >/dev/null 2>&1; then fail "a clover package is installed already; remove it first"; fi
deb=$(scripts/deb.sh)
echo "deb-test: installing $deb"
dpkg -i "$deb" >/tmp/deb-test-install.log 2>&1 || { cat /tmp/deb-test-install.log; fail "dpkg -i failed"; }
trap 'dpkg -P clover >/dev/null 2>&1 || true' EXIT

for f in /usr/bin/clover /etc/clover/server.yaml /etc/clover/client.yaml /etc/clover/monitor.env \
  /lib/systemd/system/clover-server.service /lib/systemd/system/clover-client.service /lib/systemd/system/clover-monitor.service \
  /etc/clover/keys/admin.token /etc/clover/keys/monitor.token; do
  [ -e "$f" ] || fail "$f is not installed"
done
getent passwd clover >/dev/null || fail "no clover user"
[ "$(stat -c %U /etc/clover/keys)" = clover ] || fail "/etc/clover/keys is not the clover user's"
[ "$(stat -c %a /etc/clover/keys/admin.token)" = 600 ] || fail "admin.token is not 0600"
[ "$(stat -c %U /var/lib/clover)" = clover ] || fail "/var/lib/clover is not the clover user's"
/usr/bin/clover --help >/dev/null || fail "the installed clover does not run"
# The tokens made on install are in the keyring's tokens file (by name; only their hashes are kept).
grep -q "admin" /etc/clover/keys/tokens && grep -q "monitor" /etc/clover/keys/tokens || fail "the install's tokens are not in /etc/clover/keys/tokens"
for f in server.pub server.key cluster.secret clients.secret; do
  [ -e "/etc/clover/keys/$f" ] || fail "the install made no /etc/clover/keys/$f"
done
if command -v systemd-analyze >/dev/null; then
  out=$(systemd-analyze verify /lib/systemd/system/clover-server.service /lib/systemd/system/clover-client.service \
    /lib/systemd/system/clover-monitor.service 2>&1 || true)
  # Outside a booted systemd (a container, CI) it may not reach the manager; what it says of our units counts.
  if echo "$out" | grep -i "clover-" | grep -vi "Failed to connect\|No such file or directory.*bus" | grep -qi "error\|unknown\|invalid\|failed"; then
    echo "$out" >&2; fail "systemd-analyze verify finds faults in the units"
  fi
  echo "deb-test: systemd-analyze verify: the units are clean"
fi
# A second install (an upgrade) keeps the keys.
before=$(md5sum /etc/clover/keys/admin.token)
dpkg -i "$deb" >/dev/null 2>&1 || fail "reinstall failed"
[ "$(md5sum /etc/clover/keys/admin.token)" = "$before" ] || fail "a reinstall changed the keys"

dpkg -r clover >/dev/null || fail "dpkg -r failed"
[ ! -e /usr/bin/clover ] || fail "/usr/bin/clover left after remove"
[ -e /etc/clover/server.yaml ] || fail "remove took the configuration (it is for purge)"
dpkg -P clover >/dev/null || fail "dpkg -P failed"
trap - EXIT
for f in /etc/clover/server.yaml /etc/clover/keys /var/lib/clover /lib/systemd/system/clover-server.service; do
  [ ! -e "$f" ] || fail "$f left after purge"
done
getent passwd clover >/dev/null && fail "the clover user is left after purge"
echo "deb-test: ok ($deb installed, checked, removed and purged)"
