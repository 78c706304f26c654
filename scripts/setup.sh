#!/usr/bin/env bash
# Installs what the bridge and its tests need on a fresh Debian machine: only what is missing.
set -euo pipefail

# scripts/test.sh sets SETUP_FOR_TESTS=1: the deployment tests also need debootstrap (the image's runtime stage as
# a chroot), systemd's systemd-analyze and Debian's python3 with libseccomp's bindings (the unit's
# SystemCallFilter=; procps's kill runs its ExecReload=), nginx (the compose nginx config), and python3-websockets
# (an independent WebSocket implementation the codec and the Ditto /ws/2 test server are checked against).
packages=(libmosquitto-dev libssl-dev mosquitto mosquitto-clients openssl pkg-config)
if [ "${SETUP_FOR_TESTS:-0}" = 1 ]; then
    packages+=(debootstrap systemd procps python3 python3-seccomp nginx python3-websockets)
fi
need=()
for pkg in "${packages[@]}"; do
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
