# RouterOS 7 script for the MikroTik router of clinic @clinic_id@ (@clinic_name@), rendered by
# `clinicwatch-agent render-config`. RouterOS cannot run the agent: it runs on the clinic's edge box
# (@agent_address@), which polls this router over SNMPv3, read-only, authPriv.
# Import:  /import file-name=clinicwatch-snmp.rsc   (after uploading this file in Files)

# No default "public" community.
/snmp community set [find default=yes] disabled=yes
# The agent's user: SHA1 + AES, from the edge box only, no write access.
/snmp community remove [find name=clinicwatch]
/snmp community add name=clinicwatch security=private read-access=yes write-access=no \
    authentication-protocol=SHA1 authentication-password="@router_auth@" \
    encryption-protocol=AES encryption-password="@router_priv@" addresses=@agent_address@/32
/snmp set enabled=yes contact="@snmp_contact@" location="@clinic_name@"
# SNMP answers on the LAN only: drop it from anywhere else (the WAN, the LTE interface).
/ip firewall filter remove [find comment="clinicwatch: snmp from the agent only"]
/ip firewall filter add chain=input protocol=udp dst-port=161 src-address=!@agent_address@ action=drop \
    comment="clinicwatch: snmp from the agent only" place-before=0
