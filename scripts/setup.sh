#!/usr/bin/env bash
# Installs what the bridge and its tests need on a fresh Debian machine: only what is missing.
set -euo pipefail

need=()
for pkg in libmosquitto-dev mosquitto mosquitto-clients openssl pkg-config; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
    for dir in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
        [ -x "$dir/swift" ] && export PATH="$dir:$PATH" && break
    done
fi
command -v swift >/dev/null 2>&1 || { echo "setup: Swift 6.x toolchain not found (expected swift on PATH or /opt/swift)" >&2; exit 1; }
