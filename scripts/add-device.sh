#!/usr/bin/env bash
# Gives a device its own login on the compose mosquitto's device listener (Config/mosquitto.conf), or takes it away.
#
#   scripts/add-device.sh DEVICE_ID                      # random password, printed once on stdout
#   scripts/add-device.sh --password-out FILE DEVICE_ID  # ... written to FILE (mode 0600) instead
#   scripts/add-device.sh --password-file FILE DEVICE_ID # the password is FILE's first line ('-': stdin)
#   scripts/add-device.sh --remove DEVICE_ID
#   options: --secrets DIR (default: secrets/ at the repository root, or $SECRETS_DIR)
#
# The device's MQTT username is DEVICE_ID; Config/mosquitto/devices.acl confines it to devices/DEVICE_ID/...
# The first run also creates the bridge's and Ditto's users, so that `docker compose up -d` works right after:
#   DIR/                           0700: keeps other users of this host out of everything below
#   DIR/mosquitto/devices.passwd   device listener: the devices and `bridge` (mosquitto_passwd hashes)
#   DIR/mosquitto/ditto.passwd     Ditto-side listener: `bridge` and `ditto`
#   DIR/bridge.password            the bridge's password on both listeners (compose secret bridge-password)
#   DIR/ditto.password             Ditto's connection's password (compose secret ditto-password, for ditto-init)
# Files the containers read are 0644 and DIR/mosquitto is 0755 (below the 0700 DIR): bind mounts keep the host's
# owner and mode, and the containers read them as other users (mosquitto as uid 1883 when it reloads on SIGHUP,
# the bridge as uid 10001, ditto-init's curl as uid 100). A device password written with --password-out is 0600.
# Needs mosquitto_passwd (Debian/Ubuntu: apt-get install mosquitto; or set MOSQUITTO_PASSWD to its path).
set -euo pipefail

usage() {
    echo "usage: $0 [--secrets DIR] [--password-file FILE|- | --password-out FILE] DEVICE_ID" >&2
    echo "       $0 [--secrets DIR] --remove DEVICE_ID" >&2
    exit 2
}
fail() { echo "add-device: $*" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
secrets="${SECRETS_DIR:-${root}/secrets}"
mode=add
password_in=""
password_out=""
device=""
while [ $# -gt 0 ]; do
    case "$1" in
        --secrets) [ $# -ge 2 ] || usage; secrets="$2"; shift 2 ;;
        --password-file) [ $# -ge 2 ] || usage; password_in="$2"; shift 2 ;;
        --password-out) [ $# -ge 2 ] || usage; password_out="$2"; shift 2 ;;
        --remove) mode=remove; shift ;;
        -h|--help) usage ;;
        --) shift; [ $# -eq 1 ] || usage; device="$1"; shift ;;
        -*) echo "add-device: unknown option $1" >&2; usage ;;
        *) [ -z "$device" ] || usage; device="$1"; shift ;;
    esac
done
[ -n "$device" ] || usage
if [ "$mode" = remove ] && { [ -n "$password_in" ] || [ -n "$password_out" ]; }; then
    fail "--remove takes no password option"
fi

# The id is an MQTT username, client id (use_username_as_clientid), one topic level and what %u stands for in
# devices.acl: no '/', '+', '#' (they would change what the ACL pattern matches), no ':' (mosquitto_passwd's
# separator), nothing a shell or URL would mangle.
if ! [[ "$device" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]]; then
    fail "'${device}' is not a device id: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (no '/', '+', '#', ':', spaces)"
fi
# The users of the trusted side, and the client ids it connects with (Config/bridge.docker.yaml,
# Config/ditto-connection.json): a device with one of these names would be that user on the device listener,
# or (client ids are the broker's, not a listener's) take over that client's session.
reserved=(bridge ditto ditto-bridge-devices ditto-bridge-ditto ditto-edge-bridge)
for name in "${reserved[@]}"; do
    if [ "$device" = "$name" ]; then
        fail "'${device}' is reserved (${reserved[*]} are the bridge's and Ditto's users and client ids)"
    fi
done

passwd_tool="${MOSQUITTO_PASSWD:-$(command -v mosquitto_passwd || true)}"
if [ -z "$passwd_tool" ] || [ ! -x "$passwd_tool" ]; then
    fail "mosquitto_passwd not found: apt-get install mosquitto (Debian/Ubuntu), or set MOSQUITTO_PASSWD to its path"
fi

umask 077
mkdir -p "$secrets/mosquitto"
chmod 0700 "$secrets"
chmod 0755 "$secrets/mosquitto"
devices_file="$secrets/mosquitto/devices.passwd"
ditto_file="$secrets/mosquitto/ditto.passwd"

random_password() {
    # 32 letters and digits (about 190 bits): safe in a URI's user info (Ditto's connection) and on any command line.
    local password=""
    while [ "${#password}" -lt 32 ]; do
        password+="$(head -c 512 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9' || true)"
    done
    printf '%s' "${password:0:32}"
}

has_user() { [ -f "$1" ] && grep -q "^$2:" "$1"; }

# Adds or updates a user. The password goes through stdin, not the command line other users could read in ps.
set_user() { # file, user, password
    local create=()
    [ -f "$1" ] || create=(-c)
    printf '%s\n%s\n' "$3" "$3" | "$passwd_tool" "${create[@]}" "$1" "$2" >/dev/null \
        || fail "mosquitto_passwd could not set $2 in $1"
    chmod 0644 "$1"
}

# A secret file the containers read: 0644 inside the 0700 directory (see the top of this file).
secret() { # name -> the password in DIR/name, created on first use
    local file="$secrets/$1"
    if [ ! -s "$file" ]; then
        random_password > "$file"
        echo "add-device: created $file" >&2
    fi
    chmod 0644 "$file"
    cat "$file"
}

bridge_password="$(secret bridge.password)"
ditto_password="$(secret ditto.password)"
has_user "$devices_file" bridge || set_user "$devices_file" bridge "$bridge_password"
has_user "$ditto_file" bridge || set_user "$ditto_file" bridge "$bridge_password"
has_user "$ditto_file" ditto || set_user "$ditto_file" ditto "$ditto_password"

reload="reload mosquitto to apply it: docker compose kill -s HUP mosquitto"
if [ "$mode" = remove ]; then
    has_user "$devices_file" "$device" || fail "no device '${device}' in ${devices_file}"
    "$passwd_tool" -D "$devices_file" "$device" >/dev/null || fail "mosquitto_passwd could not remove ${device}"
    echo "add-device: removed ${device}; ${reload} (mosquitto then also closes its open connection)" >&2
    exit 0
fi

if [ -n "$password_in" ]; then
    if [ "$password_in" = - ]; then
        IFS= read -r password || [ -n "${password:-}" ] || fail "no password on stdin"
    else
        [ -r "$password_in" ] || fail "cannot read the password file ${password_in}"
        IFS= read -r password < "$password_in" || [ -n "${password:-}" ] || fail "${password_in} is empty"
    fi
    [ -n "$password" ] || fail "the password is empty"
else
    password="$(random_password)"
fi

# The password file first: a device whose password went nowhere would have a login nobody knows.
if [ -n "$password_out" ]; then
    (umask 077 && printf '%s\n' "$password" > "$password_out") 2>/dev/null || fail "cannot write ${password_out}"
    chmod 0600 "$password_out"
fi
existed=no
has_user "$devices_file" "$device" && existed=yes
set_user "$devices_file" "$device" "$password"
if [ "$existed" = yes ]; then what="new password for"; else what="added"; fi
if [ -n "$password_out" ]; then
    echo "add-device: ${what} ${device}; its password is in ${password_out}; ${reload}" >&2
elif [ -n "$password_in" ]; then
    echo "add-device: ${what} ${device} (MQTT username ${device}) with the given password; ${reload}" >&2
else
    echo "add-device: ${what} ${device} (MQTT username ${device}); its password, shown only now:" >&2
    printf '%s\n' "$password"
    echo "add-device: ${reload}" >&2
fi
