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
# TLS for devices: a listener on 8883 when a certificate and its key are mounted
certs="${MOSQUITTO_CERTS:-/mosquitto/certs}"
conf_d="${MOSQUITTO_CONF_D:-/mosquitto/data/conf.d}"
mkdir -p "$conf_d"
if [ -f "$certs/server.crt" ] && [ -f "$certs/server.key" ]; then
  {
    echo "listener ${MOSQUITTO_TLS_PORT:-8883}"
    echo "protocol mqtt"
    echo "certfile $certs/server.crt"
    echo "keyfile $certs/server.key"
    if [ -f "$certs/ca.crt" ]; then echo "cafile $certs/ca.crt"; fi
    echo "tls_version tlsv1.2"
  } >"$conf_d/tls.conf"
  echo "entrypoint: TLS listener on ${MOSQUITTO_TLS_PORT:-8883} with $certs/server.crt" >&2
else
  rm -f "$conf_d/tls.conf"
  echo "entrypoint: no $certs/server.crt and server.key: no TLS listener (plain 1883 only)" >&2
fi
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
  chown mosquitto:mosquitto "$passwd_file"
fi
exec mosquitto -c "$conf"
