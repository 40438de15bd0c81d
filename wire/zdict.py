"""The zlib preset dictionary of wire contract v1: what reports usually contain.

Small messages (a report every 30 s holds one or two samples) barely compress on
their own: zlib has not yet seen the keys. Primed with this dictionary, a 2-sample
report measured 755 bytes as JSON, 295 with plain zlib and 137 with the dictionary.

FROZEN: agents in the field compress with these exact bytes; the stream names them
by their Adler-32 (DICTID), and a collector must keep every dictionary it ever
shipped. To change it, add a new one beside it, never edit this one
(tests/test_wire.py pins its checksum).
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
DICTIONARIES = {DICTIONARY_V1_ID: DICTIONARY_V1}
