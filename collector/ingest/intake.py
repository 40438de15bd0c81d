"""MQTT intake (paho-mqtt 2, MQTT v5): a persistent session, optionally in a shared-subscription
group, with manual acknowledgement: a message is acknowledged only once its points are in the
store or the spool, so a collector killed at any moment loses nothing (the broker redelivers).
"""

from __future__ import annotations

import collections
import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import wire
from collector.config import IntakeConfig
from collector.state import digest

log = logging.getLogger("clinicwatch.collector")


def session_client(config: IntakeConfig, client_id: str) -> mqtt.Client:
    """A paho client for the collector's broker: MQTT v5, manual acknowledgement, the collector's
    credentials and TLS (the intake's, and the state engine's own session)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True)
    if config.username:
        client.username_pw_set(config.username, config.password())
    if config.ca_file:
        client.tls_set(ca_certs=str(config.ca_file))
    client.reconnect_delay_set(1, 30)
    return client


def start_session(client: mqtt.Client, config: IntakeConfig, receive_maximum: int | None = None) -> None:
    """Connect in the background with a persistent session (the broker queues for us while we are away)."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = config.session_expiry_s
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    client.connect_async(config.host, config.port, keepalive=config.keepalive_s, clean_start=False, properties=props)
    client.loop_start()


class Intake:
    def __init__(self, config: IntakeConfig) -> None:
        self.config = config
        # Set by the owner before start(): called in paho's thread with
        # (mid, qos, topic, payload, received_ms, held_s).
        self.handle: Callable[[int, int, str, bytes, int, int | None], None] | None = None
        self.connected = threading.Event()  # set once the broker has granted the subscriptions (SUBACK)
        self.stopping = False
        self._topics: list[str] = []
        client = session_client(config, config.client_id)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_subscribe = self._subscribed
        client.on_message = self._message
        client.on_publish = self._published
        # Facts for the state engine go out before the messages they come from are acknowledged: an
        # acknowledgement waits until every digest published before it has its PUBACK.
        client.max_inflight_messages_set(1000)
        # Digests are numbered in the order they are published; an acknowledgement waits for the PUBACK of
        # every digest up to the last one published before it (a queue of held acknowledgements, freed
        # in order as the lowest unanswered digest advances: constant work per PUBACK however many wait).
        self._facts_lock = threading.Lock()
        self._digests = 0  # published so far
        self._facts_outstanding: dict[int, int] = {}  # mid -> digest number, until its PUBACK
        self._open: set[int] = set()  # numbers of the digests without a PUBACK
        self._unanswered: list[int] = []  # the same as a heap (answered ones are dropped lazily)
        # A digest's PUBACK handled before publish_facts noted its mid (paho's thread can be that quick).
        self._facts_early: set[int] = set()
        self._deferred: collections.deque[tuple[int, list[int]]] = collections.deque()
        self.client = client

    def start(self) -> None:
        start_session(self.client, self.config, self.config.receive_maximum)

    def stop(self) -> None:
        self.stopping = True
        self.client.disconnect()
        self.client.loop_stop()

    def ack(self, mids: Iterable[int]) -> None:
        with self._facts_lock:
            if self._facts_outstanding:
                self._deferred.append((self._digests, list(mids)))
                return
        self._ack_now(mids)

    def _ack_now(self, mids: Iterable[int]) -> None:
        for mid in mids:
            if mid >= 0:
                self.client.ack(mid, 1)

    def publish_facts(self, payload: bytes) -> None:
        """Publish a digest for the state engine (QoS 1); later acknowledgements wait for its PUBACK.

        Called by one thread (the store process's receiver), the one that also calls `ack`, so an
        acknowledgement that follows a digest always finds it noted. paho is called without holding
        _facts_lock: paho's thread holds its own lock while it runs on_publish (_published, which takes
        _facts_lock), so holding ours while publishing deadlocked under load (found by bench.state_engine)."""
        info = self.client.publish(digest.TOPIC, payload, qos=1)
        with self._facts_lock:
            self._digests += 1
            if info.mid in self._facts_early:
                self._facts_early.discard(info.mid)
            else:
                self._facts_outstanding[info.mid] = self._digests
                self._open.add(self._digests)
                heapq.heappush(self._unanswered, self._digests)

    def _published(self, _client: mqtt.Client, _u: object, mid: int, _reason: object, _props: object) -> None:
        # The intake publishes nothing but digests, so every PUBACK is a digest's.
        ready = []
        with self._facts_lock:
            number = self._facts_outstanding.pop(mid, None)
            if number is None:
                self._facts_early.add(mid)
                return
            self._open.discard(number)
            while self._unanswered and self._unanswered[0] not in self._open:
                heapq.heappop(self._unanswered)
            # Every digest numbered below this one has its PUBACK.
            lowest = self._unanswered[0] if self._unanswered else self._digests + 1
            while self._deferred and self._deferred[0][0] < lowest:
                ready.append(self._deferred.popleft()[1])
        for mids in ready:
            self._ack_now(mids)

    def _connected(self, client: mqtt.Client, _u: object, _flags: object, reason: mqtt.ReasonCode,
                   _props: object) -> None:
        if reason.is_failure:
            log.error("broker refused the collector", extra={"fields": {"reason": str(reason)}})
            return
        topics = [(wire.subscription(kind, self.config.share_group), 1) for kind in ("telemetry", "event", "status")]
        self._topics = [t for t, _ in topics]
        client.subscribe(topics)

    def _subscribed(self, _client: mqtt.Client, _u: object, _mid: int, reasons: list[mqtt.ReasonCode],
                    _props: object) -> None:
        refused = [f"{topic}: {reason}" for topic, reason in zip(self._topics, reasons) if reason.is_failure]
        if refused:
            # Without its subscriptions the collector would sit connected and receive nothing: say so loudly.
            log.error("broker refused the collector's subscriptions; check the broker's ACL for the collector user",
                      extra={"fields": {"refused": refused}})
            return
        self.connected.set()
        log.info("subscribed", extra={"fields": {"topics": self._topics}})

    def _disconnected(self, _client: mqtt.Client, _u: object, _flags: object, reason: mqtt.ReasonCode,
                      _props: object) -> None:
        self.connected.clear()
        if not self.stopping:
            log.warning("disconnected from the broker", extra={"fields": {"reason": str(reason)}})

    def _message(self, _client: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        # The moment of receipt is taken here, before any queue of the collector's own, and travels
        # with the message (through the spool too): with the broker's hold, it dates what an agent
        # with an unsynchronised clock sent.
        received_ms = time.time_ns() // 1_000_000
        remaining = getattr(message.properties, "MessageExpiryInterval", None) if message.properties else None
        assert self.handle is not None
        self.handle(message.mid, message.qos, message.topic, message.payload, received_ms,
                    wire.held_seconds(remaining))
