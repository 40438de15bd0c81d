"""The zlib preset dictionaries of wire contract v1: what reports usually contain.

Small messages (a report every 30 s holds one or two samples) barely compress on
their own: zlib has not yet seen the keys. Primed with the first dictionary, a 2-sample
report measured 755 bytes as JSON, 295 with plain zlib and 137 with the dictionary.

FROZEN: agents in the field compress with these exact bytes; the stream names them
by their Adler-32 (DICTID), and a collector must keep every dictionary it ever
shipped. To change one, add a new one beside it, never edit an old one
(tests/test_wire.py pins their checksums). A sender uses the newest (`DICTIONARY`);
a collector must know it before its agents do (docs/wire-contract.md, Encoding).
"""

DICTIONARY_V1 = (
    'answer answers budget_month_bytes cert_days_left connect_ms connected cpu_s down_bytes down_kbps dup'
    'licates duration_ms fingerprint hops http_version jitter_ms last_publish_age_s late loss_max_burst l'
    'oss_pct oldest_unsent_age_s outbox_bytes outbox_events outbox_samples path publish_refused published'
    '_records rcode reached reason received resolve_ms route_changed rss_kib rtt_avg_ms rtt_max_ms rtt_mi'
    'n_ms rtt_stddev_ms sent spent_month_bytes status success test_bytes thinned_total tls_ms ttfb_ms up_'
    'bytes up_kbps uptime_s version timeout no_reply partial_loss lost_mid_burst unreachable refused {"v"'
    ':1,"clinic":"","state":"online","boot":"","agent":"0.1.0","reason":"lost"}{"v":1,"clinic":"","boot":'
    '"","mono_now":,"events":[{"seq":,"t":17,"mono":,"sync":"ntp","kind":"outage","detail":{"down_t":17,"'
    'down_mono":,"up_mono":,"duration_s":,"cause":"keepalive timeout or link lost","power_cycled":false,"'
    'down_sync":"ntp"}}]}{"v":1,"clinic":"","boot":"","mono_now":,"samples":[{"seq":,"t":17,"mono":,"sync'
    '":"ntp","m":"agent","tags":{},"f":{"outbox_samples":0,"outbox_events":0,"outbox_bytes":0,"connected"'
    ':true,"version":"0.1.0"}},{"seq":,"t":17,"mono":,"sync":"ntp","m":"tcp","tags":{"target":""},"f":{"s'
    'uccess":true,"reason":"","duration_ms":,"connect_ms":}},{"seq":,"t":17,"mono":,"sync":"ntp","m":"htt'
    'p","tags":{"target":""},"f":{"success":true,"reason":"","duration_ms":,"status":200,"connect_ms":,"t'
    'ls_ms":,"ttfb_ms":,"http_version":"HTTP/1.1","cert_days_left":}},{"seq":,"t":17,"mono":,"sync":"ntp"'
    ',"m":"dns","tags":{"target":""},"f":{"success":true,"reason":"","duration_ms":,"resolve_ms":,"rcode"'
    ':"NOERROR","answers":1,"answer":""}},{"seq":,"t":17,"mono":,"sync":"ntp","m":"icmp","tags":{"target"'
    ':"","method":"raw"},"f":{"success":true,"reason":"","duration_ms":,"sent":5,"received":5,"loss_pct":'
    '0.0,"duplicates":0,"late":0,"loss_max_burst":0,"rtt_min_ms":,"rtt_avg_ms":,"rtt_max_ms":,"rtt_stddev'
    '_ms":,"jitter_ms":}}]}'
).encode()

DICTIONARY_V1_ID = 0xc2899188


def _sample(m: str, tags: str, fields: str) -> str:
    return f'{{"seq":,"t":17,"mono":,"sync":"ntp","m":"{m}","tags":{{{tags}}},"f":{{{fields}}}}},'


# The second (2026-12-01): the first had no SNMP measurement, nor the self-metrics and HTTP fields
# added since, so a device's report compressed as if zlib had never seen its keys (docs/agent.md,
# Footprint: a fifth of the SNMP profile's payload bytes). It is the first with SNMP and
# self-metrics templates before it: zlib reaches the dictionary's end most cheaply, so the
# templates of the commonest samples (ICMP) stay last. Tags and values are generic ones (eth0,
# wwan0, /), not any one device's.
DICTIONARY_V2 = (
    _sample("snmp_cellular", '"device":"router","modem":"1"',
            '"rssi_dbm":-,"rsrp_dbm":-,"rsrq_db":-,"sinr_db":,"operator":"","technology":"lte",'
            '"registration":"","connection":"","cell_id":""')
    + _sample("snmp_ups", '"device":"ups"',
              '"on_battery":false,"output_source":"normal","battery_status":"normal","alarms":0,"charge_pct":100,'
              '"minutes_remaining":,"seconds_on_battery":0,"battery_voltage_v":,"input_voltage_v":230,'
              '"output_load_pct":')
    + _sample("snmp_device", '"device":"ups","profile":"generic"',
              '"status":"ok","reachable":true,"requests":,"detail":"","poll_ms":,"uptime_s":')
    + _sample("snmp_system", '"device":"ups"', '"host_uptime_s":,"response_ms":,"name":""')
    + _sample("snmp_host", '"device":"router"',
              '"cpus":1,"cpu_load_pct":,"mem_total_bytes":,"mem_used_bytes":,"mem_used_pct":')
    + _sample("snmp_storage", '"device":"router","storage":"/"', '"size_bytes":,"used_bytes":,"used_pct":')
    + _sample("snmp_if", '"device":"router","interface":"eth0"',
              '"oper_up":true,"oper_status":"up","admin_up":true,"speed_bps":,"counter_bits":64')
    + _sample("snmp_if", '"device":"router","interface":"wwan0"',
              '"in_bps":,"in_errors_ps":0.0,"in_discards_ps":0.0,"out_bps":,"out_errors_ps":0.0,"out_discards_ps":0.0')
    + _sample("snmp_device", '"device":"router","profile":"generic"', '"poll_ms":,"uptime_s":')
    + _sample("snmp_system", '"device":"router"', '"host_uptime_s":,"response_ms":')
    + _sample("agent", "",
              '"outbox_samples":,"outbox_events":0,"outbox_bytes":,"oldest_unsent_age_s":,"thinned_total":0,'
              '"published_records":,"publish_refused":0,"last_publish_age_s":,"connected":true,"version":"0.1.0",'
              '"uptime_s":,"cpu_s":,"rss_kib":,"wan_month_bytes":,"wan_probes_month_bytes":,'
              '"wan_reporting_month_bytes":,"wan_throughput_month_bytes":,"lan_month_bytes":')
    + _sample("http", '"target":""',
              '"success":true,"reason":"","duration_ms":,"status":200,"connect_ms":,"tls_ms":,"ttfb_ms":,'
              '"http_version":"HTTP/1.1","tls_resumed":true,"cert_days_left":')
).encode() + DICTIONARY_V1

DICTIONARY_V2_ID = 0x5a76af7d
DICTIONARIES = {DICTIONARY_V1_ID: DICTIONARY_V1, DICTIONARY_V2_ID: DICTIONARY_V2}
DICTIONARY = DICTIONARY_V2  # what a sender uses
