#!/usr/bin/env bash
# Installs what Clover needs to build, run and test, idempotently:
#   - Debian packages: ZooKeeper 3.8 (and its JRE), libzmq3-dev (CURVE-enabled libzmq for pebbe/zmq4), pkg-config,
#     chromium (headless, for the admin console's browser tests; internal/testenv/browser.go), adduser (the
#     Debian package's maintainer scripts, make deb-test).
#   - FerretDB v1.24.0 (MongoDB wire protocol over SQLite), built from the Go module proxy.
# Prints nothing but progress; exits non-zero if anything could not be installed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
need_apt=()
dpkg -s zookeeper >/dev/null 2>&1 || need_apt+=(zookeeper)
dpkg -s libzmq3-dev >/dev/null 2>&1 || need_apt+=(libzmq3-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
dpkg -s chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v adduser >/dev/null 2>&1 || need_apt+=(adduser)  # the Debian package's postinst (make deb-test)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps: installing Debian packages: ${need_apt[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# ZooKeeper's Debian package is not started as a service by us: Clover runs its own instances.
[ -x /usr/share/zookeeper/bin/zkServer.sh ] || { echo "deps: /usr/share/zookeeper/bin/zkServer.sh missing" >&2; exit 1; }

"$here/ferretdb.sh" >/dev/null
echo "deps: ok (zookeeper, libzmq, chromium, ferretdb at $("$here/ferretdb.sh" --path))"
