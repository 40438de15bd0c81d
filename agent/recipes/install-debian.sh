#!/bin/sh
# Install the ClinicWatch agent of clinic @clinic_id@ (@clinic_name@) on this Debian 12 /
# Raspberry Pi OS box. Rendered by `clinicwatch-agent render-config`; run as root from the
# directory it wrote:  sh install.sh
# AGENT_PACKAGE may name a wheel file brought on a USB stick instead of PyPI's 'clinicwatch[agent]'.
set -eu
cd "$(dirname "$0")"
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo sh install.sh)" >&2; exit 1; }

echo "1/6 Debian packages: Python, snmpd"
apt-get install -y --no-install-recommends python3 python3-venv snmpd snmp >/dev/null

echo "2/6 the agent, in /opt/clinicwatch"
[ -x /opt/clinicwatch/bin/python ] || python3 -m venv /opt/clinicwatch
/opt/clinicwatch/bin/pip install --quiet "${AGENT_PACKAGE:-clinicwatch[agent]}"
ln -sf /opt/clinicwatch/bin/clinicwatch-agent /usr/local/bin/clinicwatch-agent

echo "3/6 its user and files: /etc/clinicwatch (secrets readable by the agent only)"
id clinicwatch >/dev/null 2>&1 || useradd --system --home /var/lib/clinicwatch --shell /usr/sbin/nologin clinicwatch
install -d -m 750 -o root -g clinicwatch /etc/clinicwatch
install -m 640 -o root -g clinicwatch agent.yaml ca.pem /etc/clinicwatch/
for secret in mqtt.password @secret_files@; do
    install -m 640 -o root -g clinicwatch "$secret" /etc/clinicwatch/
done

echo "4/6 snmpd: SNMPv3 read-only user for the agent, on loopback only"
install -m 600 snmpd.conf /etc/snmp/snmpd.conf
systemctl stop snmpd
net-snmp-create-v3-user -ro -a SHA -A "$(cat snmp-box.auth)" -x AES -X "$(cat snmp-box.priv)" clinicwatch >/dev/null
systemctl enable --now snmpd >/dev/null 2>&1

echo "5/6 the clock: measurements are dated by it"
if [ "$(timedatectl show -p NTPSynchronized --value 2>/dev/null)" != "yes" ]; then
    echo "  warning: the clock is not synchronised (timedatectl); the agent dates its samples anyway and" \
         "says so, but enable NTP: timedatectl set-ntp true"
fi

echo "6/6 the service"
install -m 644 clinicwatch-agent.service /etc/systemd/system/
systemctl daemon-reload
clinicwatch-agent check-config --config /etc/clinicwatch/agent.yaml
systemctl enable --now clinicwatch-agent
echo "done: clinic @clinic_id@ reports to @broker@. Try: clinicwatch-agent probe-once --config /etc/clinicwatch/agent.yaml"
