#!/bin/sh
# Install the ClinicWatch agent of clinic @clinic_id@ (@clinic_name@) on this OpenWrt / Teltonika
# RutOS router. Rendered by `clinicwatch-agent render-config`; copy the directory to the router
# (scp -r) and run as root from it:  sh install.sh
# AGENT_PACKAGE may name a wheel file instead of PyPI's 'clinicwatch[agent]'.
set -eu
cd "$(dirname "$0")"

echo "1/5 packages: Python and pip (opkg)"
opkg update >/dev/null
opkg install python3 python3-pip python3-sqlite3 python3-openssl >/dev/null

echo "2/5 the agent"
pip3 install --quiet "${AGENT_PACKAGE:-clinicwatch[agent]}"

echo "3/5 its files: /etc/clinicwatch (persistent flash; the outbox lives in @state_dir@)"
mkdir -p /etc/clinicwatch @state_dir@
for file in agent.yaml ca.pem mqtt.password @secret_files@; do
    cp "$file" /etc/clinicwatch/
    chmod 600 "/etc/clinicwatch/$file"
done
@snmp_step@
echo "4/5 the clock"
if ! ntpd -q -n -p pool.ntp.org >/dev/null 2>&1; then
    echo "  warning: no NTP answer; enable System > Time Synchronization so samples are dated truly"
fi

echo "5/5 the service (procd)"
cp clinicwatch-agent.init /etc/init.d/clinicwatch-agent
chmod 755 /etc/init.d/clinicwatch-agent
clinicwatch-agent check-config --config /etc/clinicwatch/agent.yaml
/etc/init.d/clinicwatch-agent enable
/etc/init.d/clinicwatch-agent start
echo "done: clinic @clinic_id@ reports to @broker@. Try: clinicwatch-agent probe-once --config /etc/clinicwatch/agent.yaml"
