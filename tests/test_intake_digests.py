"""The intake publishes digests for the state engine and holds acknowledgements until their PUBACKs:
with a real Mosquitto, many digests at once, while paho's thread handles PUBACKs."""

from __future__ import annotations

import threading
import time

import pytest

from collector.config import IntakeConfig
from collector.ingest.intake import Intake
from lab.servers import Mosquitto


@pytest.mark.timeout(120)
def test_digests_and_acknowledgements_never_deadlock_and_every_puback_is_seen(start_server) -> None:
    # paho's thread runs on_publish holding paho's own lock; the intake once published while holding
    # the lock on_publish takes, and the two threads could wait for each other for ever. 20,000 digests
    # published back to back meet thousands of PUBACKs in flight.
    broker = start_server(Mosquitto())
    intake = Intake(IntakeConfig(port=broker.port, username=None, client_id="digest-test"))
    intake.handle = lambda *_: None
    intake.start()
    acked: list[int] = []
    intake._ack_now = acked.extend  # type: ignore[method-assign] - the broker sent no message to acknowledge
    try:
        assert intake.connected.wait(30)
        done = threading.Event()

        def publish() -> None:
            for n in range(20_000):
                intake.publish_facts(b"digest %d" % n)
                if n % 100 == 99:
                    intake.ack([n])  # the acknowledgement of a message whose facts went out just before
            done.set()

        worker = threading.Thread(target=publish, daemon=True)
        worker.start()
        assert done.wait(60), "publishing digests stopped: the intake and paho wait for each other"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (intake._facts_outstanding or len(acked) < 200):
            time.sleep(0.05)
        # Every digest's PUBACK was matched, none is left waiting, and every held acknowledgement went out.
        assert (intake._facts_outstanding, intake._open, intake._facts_early) == ({}, set(), set())
        assert sorted(acked) == [n for n in range(20_000) if n % 100 == 99]
    finally:
        intake.stop()
