#!/bin/sh
# A simulated device for docker-compose.yml (service device-sim): announces itself online (retained, on the
# status topic of Config/bridge.yaml's `devices:` block), then publishes a temperature every 5 seconds on the
# topic the `telemetry` rule maps to a live event on org.example:<device>.
# It logs in as the device (MQTT username = device id, password from scripts/add-device.sh); the device listener
# allows it only devices/<device>/... (Config/mosquitto/devices.acl) and sets its client id to the username.
# Environment: BROKER_HOST (mosquitto), BROKER_PORT (1883), DEVICE_ID (sensor-1),
# DEVICE_PASSWORD_FILE (/run/secrets/sensor-1-password), INTERVAL (5), COUNT (0 = forever).
set -eu
host="${BROKER_HOST:-mosquitto}"
port="${BROKER_PORT:-1883}"
device="${DEVICE_ID:-sensor-1}"
password_file="${DEVICE_PASSWORD_FILE:-/run/secrets/${device}-password}"
interval="${INTERVAL:-5}"
count="${COUNT:-0}"

[ -r "$password_file" ] || {
    echo "simulated-device: cannot read ${password_file}: scripts/add-device.sh --password-out secrets/${device}.password ${device}" >&2
    exit 1
}
password=$(head -n 1 "$password_file")

pub() { mosquitto_pub -h "$host" -p "$port" -V mqttv5 -q 1 -u "$device" -P "$password" "$@"; }

pub -r -t "devices/${device}/status" -m online
n=0
while [ "$count" -eq 0 ] || [ "$n" -lt "$count" ]; do
    n=$((n + 1))
    # 20.0 .. 24.9 without awk/bc: busybox sh arithmetic on the counter.
    tenths=$(( (n * 7) % 50 ))
    pub -t "devices/${device}/telemetry/temperature" -m "{\"value\": $((20 + tenths / 10)).$((tenths % 10))}"
    [ "$n" -eq "$count" ] && break
    sleep "$interval"
done
