#!/usr/bin/env bash
# Install what ClinicWatch's demo and tests need on Debian 12 / Ubuntu 22.04+:
# the real servers from Debian packages and the Python packages in ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(mosquitto mosquitto-clients influxdb snmpd snmp victoria-metrics dnsmasq-base iputils-ping iproute2 nftables
                 util-linux time python3-venv chromium chromium-driver
                 shellcheck systemd)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    # The packages' own services are not wanted: tests and the demo start their own.
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    for service in mosquitto influxdb snmpd victoria-metrics; do
        $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || true
    done
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "setup: ClinicWatch needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version)" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[dev]"
# `grafana push` in its own environment: grafana-client's urllib3-future must not replace the
# urllib3 that the collector's influxdb-client runs on (dashboards/README.md).
if [ ! -x .venv-grafana/bin/python ]; then
    "$PYTHON" -m venv .venv-grafana
fi
.venv-grafana/bin/python -m pip install -q -e ".[grafana]"
echo "setup: ready ($(.venv/bin/python --version), packages in .venv)"
