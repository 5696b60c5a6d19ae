#!/bin/sh
# Add (or update) the service users in the broker's password file, then start Mosquitto.
# Device users added by an operator stay in the file: it is only updated, never recreated.
set -eu
conf="${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}"
passwd_file="${MOSQUITTO_PASSWD_FILE:-/mosquitto/data/passwd}"
mkdir -p "$(dirname "$passwd_file")"
touch "$passwd_file"
chmod 0700 "$passwd_file"

add_user() {
  if [ -z "$2" ]; then
    echo "entrypoint: no password for MQTT user $1 (set it in .env)" >&2
    exit 1
  fi
  mosquitto_passwd -b "$passwd_file" "$1" "$2"
}

add_user ingest "${IOC_MQTT_INGEST_PASSWORD:-}"
add_user analytics "${IOC_MQTT_ANALYTICS_PASSWORD:-}"
add_user api "${IOC_MQTT_API_PASSWORD:-}"
add_user simulator "${IOC_MQTT_SIMULATOR_PASSWORD:-}"
if [ -n "${IOC_MQTT_ALERTS_READER_PASSWORD:-}" ]; then
  add_user alerts-reader "$IOC_MQTT_ALERTS_READER_PASSWORD"
fi
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
  chown mosquitto:mosquitto "$passwd_file"
fi
exec mosquitto -c "$conf"
