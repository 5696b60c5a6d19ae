#!/bin/sh
# Write the service users (passwords from the environment) as the bootstrap file of EMQX's
# built-in authentication database, then start EMQX with the image's own entrypoint.
# The bootstrap file only adds users that do not exist yet: change a password of an
# existing user in the dashboard or with the REST API.
set -eu
users="${EMQX_BOOTSTRAP_USERS:-/opt/emqx/data/ioc-users.csv}"
mkdir -p "$(dirname "$users")"
umask 077
echo "user_id,password,is_superuser" > "$users"

add_user() {
  if [ -z "$2" ]; then
    echo "entrypoint: no password for MQTT user $1 (set it in .env)" >&2
    exit 1
  fi
  echo "$1,$2,false" >> "$users"
}

add_user ingest "${IOC_MQTT_INGEST_PASSWORD:-}"
add_user analytics "${IOC_MQTT_ANALYTICS_PASSWORD:-}"
add_user api "${IOC_MQTT_API_PASSWORD:-}"
add_user simulator "${IOC_MQTT_SIMULATOR_PASSWORD:-}"
if [ -n "${IOC_MQTT_ALERTS_READER_PASSWORD:-}" ]; then
  add_user alerts-reader "$IOC_MQTT_ALERTS_READER_PASSWORD"
fi
exec /usr/bin/docker-entrypoint.sh /opt/emqx/bin/emqx foreground
