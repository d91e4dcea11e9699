#!/usr/bin/env bash
# The Debian packages the integration tests run for real: Prometheus (the dashboard's queries
# and the alert rules), the Pushgateway (`slamctl infer --pushgateway`) and Chromium (the HTML
# report renders with its thumbnails). Installs the missing ones as root; otherwise names the
# command to run and stops.
set -euo pipefail
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
command -v chromium >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "the tests need ${missing[*]}: run 'sudo apt-get install -y --no-install-recommends ${missing[*]}' (or ./test.sh as root)" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
