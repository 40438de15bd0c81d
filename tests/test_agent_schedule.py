"""Scheduling: a probe slower than its interval never overlaps itself and never holds up the others."""

from __future__ import annotations

import socket

from lab.servers import Mosquitto
from tests.agent_harness import Watcher, agent_config, start_agent, stop_agent


def test_a_slow_probe_runs_back_to_back_not_overlapping_and_others_keep_their_pace(start_server, tmp_path) -> None:
    broker = start_server(Mosquitto())
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a resolver that never answers
    silent.bind(("127.0.0.1", 0))
    watcher = Watcher(broker.host, broker.port)
    config = agent_config(tmp_path, broker.host, broker.port, [
        {"kind": "dns", "name": "silent", "server": "127.0.0.1", "port": silent.getsockname()[1],
         "query": "records.salud.test", "interval_s": 1, "timeout_s": 2.5},
        {"kind": "tcp", "name": "fast", "host": "127.0.0.1", "port": broker.port, "interval_s": 1},
    ])
    agent = start_agent(config)
    try:
        watcher.wait_for(lambda: sum(r.m == "dns" for _, r, _ in watcher.records()) >= 4, timeout=60,
                         what="four runs of the slow probe")
    finally:
        stop_agent(agent)
        watcher.close()
        silent.close()
    slow = sorted((r for _, r, _ in watcher.records() if r.m == "dns"), key=lambda r: r.t)
    fast = [r for _, r, _ in watcher.records() if r.m == "tcp" and slow[0].t <= r.t <= slow[-1].t]
    assert all(r.f["reason"] == "timeout" and r.f["duration_ms"] >= 2400 for r in slow)
    starts = [r.t for r in slow]
    assert all(b - a >= 2400 for a, b in zip(starts, starts[1:])), f"runs overlapped: {starts}"
    span_s = (slow[-1].t - slow[0].t) / 1000
    assert len(fast) >= 0.7 * span_s, f"the fast probe was held up: {len(fast)} runs in {span_s:.1f} s"
