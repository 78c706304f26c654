#!/bin/sh
# Creates, through Ditto's HTTP API, what the bridge's default config needs in Ditto (run by the compose service
# `ditto-init`; idempotent, PUT everywhere):
#   1. the policy org.example:edge-bridge-demo (policy.json): the demo user, and the connection's subject
#      integration:edge-bridge with READ and WRITE on thing:/ and message:/;
#   2. the thing org.example:sensor-1 (thing.json) governed by it;
#   3. the MQTT-5 connection edge-bridge (Config/ditto-connection.json), which logs in on mosquitto's Ditto-side
#      listener as the user `ditto`: DITTO_MQTT_PASSWORD in its uri becomes that user's password, read from the
#      compose secret scripts/add-device.sh made (secrets/ditto.password).
# Environment: DITTO_GATEWAY (http://gateway:8080), DITTO_DEVOPS_PASSWORD (foobar),
# DITTO_MQTT_PASSWORD_FILE (/run/secrets/ditto-password).
set -eu
gateway="${DITTO_GATEWAY:-http://gateway:8080}"
devops="devops:${DITTO_DEVOPS_PASSWORD:-foobar}"
password_file="${DITTO_MQTT_PASSWORD_FILE:-/run/secrets/ditto-password}"

[ -r "$password_file" ] || { echo "ditto-init: cannot read ${password_file}: run scripts/add-device.sh first" >&2; exit 1; }
mqtt_password=$(head -n 1 "$password_file")
# It goes into the uri's user info as it is: only characters that need no percent-encoding (add-device.sh
# makes letters and digits).
case "$mqtt_password" in
    "" | *[!A-Za-z0-9._~-]*)
        echo "ditto-init: the password in ${password_file} is empty or has characters a uri would need encoded" >&2
        exit 1 ;;
esac
sed "s|:DITTO_MQTT_PASSWORD@|:${mqtt_password}@|" /ditto/connection.json > /tmp/connection.json
# The gateway trusts this header because it runs with ENABLE_PRE_AUTHENTICATION=true (as behind nginx).
user="x-ditto-pre-authenticated: nginx:ditto"
policy="org.example:edge-bridge-demo"
thing="org.example:sensor-1"

echo "ditto-init: waiting for ${gateway}"
i=0
until curl -sf -o /dev/null "${gateway}/health"; do
    i=$((i + 1))
    [ "$i" -ge 120 ] && { echo "ditto-init: gateway not healthy after 10 minutes" >&2; exit 1; }
    sleep 5
done

put() { # what, url, file, auth-args...
    what="$1"; url="$2"; file="$3"; shift 3
    status=$(curl -s -o /tmp/answer -w '%{http_code}' -X PUT -H 'Content-Type: application/json' "$@" \
        --data-binary "@${file}" "${url}")
    case "$status" in
        200|201|204) echo "ditto-init: ${what}: ${status}" ;;
        *) echo "ditto-init: ${what} failed with ${status}:" >&2; cat /tmp/answer >&2; echo >&2; exit 1 ;;
    esac
}

put "policy ${policy}" "${gateway}/api/2/policies/${policy}" /ditto/policy.json -H "${user}"
put "thing ${thing}" "${gateway}/api/2/things/${thing}" /ditto/thing.json -H "${user}"
put "connection edge-bridge" "${gateway}/api/2/connections/edge-bridge" /tmp/connection.json -u "${devops}"
echo "ditto-init: done; the connection's status: ${gateway}/api/2/connections/edge-bridge/status (devops)"
