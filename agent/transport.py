"""The clinic's MQTT session (paho-mqtt 2, MQTT v5): TLS, credentials, Last Will and birth
message, QoS 1 publishes whose PUBACK is reported back, and reconnects with jittered backoff.

MQTT v5 because its PUBACK carries a reason code: a publish the broker refuses
(ACL) is reported as refused and stays in the outbox. Under v3.1.1 the broker
acknowledges a refused publish like any other and the agent would delete it.

paho runs its network loop in its own thread; every callback here is handed to
the owner through the functions given to the constructor, which must be
thread-safe (the runtime forwards them to its event loop).
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable

from agent.imports import deferred, kept_out

# paho imports dnspython's resolver, when it is installed, only for connect_srv (SRV lookups), which the
# agent does not use; with what it pulls in that is about 3.7 MiB resident. It imports urllib.request (with
# http.client, email and tempfile: 1.8 MiB) only to read an `mqtt_proxy` from the environment when PySocks
# is installed, which the agent's install does not bring: imported if and when paho reads it (httpx, with
# the first HTTP check, imports it too).
with kept_out("dns.resolver"), deferred("urllib.request"):
    import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import wire
from agent import __version__
from agent.config import MqttConfig
from agent.datause import FIN_BYTES, SYN_BYTES, tcp_wire_bytes

log = logging.getLogger(__name__)

NETWORK_THREAD_STOP_S = 5.0
PUBLISHED_AT_KEPT = 1000  # publish times kept for their PUBACKs (Session._published_at)


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random) -> float:
    """'Full jitter' backoff: uniform in [low, min(high, low * 2**attempt)], so a thousand clinics
    coming back after a regional outage spread over the window instead of arriving together."""
    return rng.uniform(low, min(high, low * 2 ** min(attempt, 30)))


class Session:
    def __init__(self, clinic_id: str, boot: str, config: MqttConfig,
                 on_acked: Callable[[int, bool, str], None],
                 on_connection: Callable[[bool, str], None],
                 on_config: Callable[[str, bytes], None],
                 rng: random.Random | None = None) -> None:
        self.clinic_id, self.boot, self.config = clinic_id, boot, config
        self.on_acked, self.on_connection, self.on_config = on_acked, on_connection, on_config
        self.rng = rng or random.Random()
        self.connected = False
        self.quiet_max_s: int | None = None  # said in the birth message; the agent sets it from its schedule
        self._attempt = 0
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"clinicwatch-{clinic_id}",
                             protocol=mqtt.MQTTv5)
        client.username_pw_set(config.username or clinic_id, config.secret())
        if config.tls is not None:
            client.tls_set(ca_certs=str(config.tls.ca_file),
                           certfile=str(config.tls.cert_file) if config.tls.cert_file else None,
                           keyfile=str(config.tls.key_file) if config.tls.key_file else None,
                           cert_reqs=ssl.CERT_REQUIRED)
        will = wire.Status(v=1, clinic=clinic_id, state="offline", boot=boot, agent=__version__, reason="lost")
        # Status messages carry the hold clock too, so the collector dates a Last Will (or a birth) that a
        # broker held while the collector was away from when the broker published it.
        will_expiry = Properties(PacketTypes.WILLMESSAGE)
        will_expiry.MessageExpiryInterval = wire.HOLD_CLOCK_S
        client.will_set(wire.topic(clinic_id, "status"), wire.encode(will), qos=1, retain=True,
                        properties=will_expiry)
        client.max_inflight_messages_set(config.inflight_batches + 4)  # batches, plus birth and status
        client.on_connect = self._connected
        client.on_connect_fail = self._connect_failed
        client.on_disconnect = self._disconnected
        client.on_publish = self._published
        client.on_message = self._message
        client.on_socket_close = self._socket_closing
        self.client = client
        self._closed_bytes = 0  # IP bytes of this session's connections already closed (and attempts failed)
        self._bytes_lock = threading.Lock()
        # When each batch was handed to paho, by message id: its PUBACK proves it went out by then.
        self._published_at: dict[int, float] = {}
        self._expiry = Properties(PacketTypes.PUBLISH)
        self._expiry.MessageExpiryInterval = wire.HOLD_CLOCK_S
        self._next_delay()

    def start(self) -> None:
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self.client.loop_start()

    def stop(self, reason: str = "shutdown") -> None:
        if self.connected:
            status = wire.Status(v=1, clinic=self.clinic_id, state="offline", boot=self.boot, agent=__version__,
                                 reason=reason)
            info = self.client.publish(wire.topic(self.clinic_id, "status"), wire.encode(status), qos=1, retain=True,
                                       properties=self._expiry)
            try:
                info.wait_for_publish(2)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        # paho's loop_stop joins its network thread without a bound; a thread caught mid-reconnect (or in
        # a TLS handshake with a broker that accepted but does not answer) must not keep the agent from
        # stopping and saving its state. The thread is a daemon: the process does not wait for it.
        stopper = threading.Thread(target=self.client.loop_stop, name="mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(NETWORK_THREAD_STOP_S)
        if stopper.is_alive():
            log.warning("the MQTT network thread did not end; stopping without it",
                        extra={"fields": {"waited_s": NETWORK_THREAD_STOP_S}})

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int | None:
        """Queue a QoS 1 publish; its PUBACK comes back through on_acked(mid, ok, reason). None: not queued.

        Every publish carries the contract's Message Expiry Interval, so the collector learns how long
        the broker held it (and so when an agent with an unsynchronised clock sent it)."""
        called = time.monotonic()
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=self._expiry)
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._published_at[info.mid] = called
            if len(self._published_at) > PUBLISHED_AT_KEPT:
                # A PUBACK handled before its id was stored here (the network thread ran in between) left
                # its entry behind: the oldest half goes, long since acknowledged or lost.
                for mid in list(self._published_at)[:PUBLISHED_AT_KEPT // 2]:
                    self._published_at.pop(mid, None)
            return info.mid  # NO_CONN: queued by paho, sent when the session is back
        log.warning("publish to %s not queued: %s", topic, mqtt.error_string(info.rc))
        return None

    def until_ping_s(self) -> float | None:
        """Seconds until paho's keepalive would send a PINGREQ (negative: due), from its own record of the
        last packet out and the last bytes in (its clock is time.monotonic); None when not connected.

        paho keeps these in private attributes; if a release renames them this says None, and batches go
        at their own time, pinged around as before (tests/test_agent_delivery.py sees the pings)."""
        last_out = getattr(self.client, "_last_msg_out", None)
        last_in = getattr(self.client, "_last_bytes_received", None)
        if not self.connected or not isinstance(last_out, float) or not isinstance(last_in, float):
            return None
        return min(last_out, last_in) + self.config.keepalive_s - time.monotonic()

    def wire_bytes(self) -> int:
        """IP bytes this session has moved to and from the broker so far, both ways (agent/datause.py)."""
        with self._bytes_lock:
            sock = self.client.socket()
            current = tcp_wire_bytes(sock) if sock is not None else None  # type: ignore[arg-type]
            return self._closed_bytes + (current or 0)

    # -- paho callbacks (network thread) ---------------------------------------
    def _socket_closing(self, _client: mqtt.Client, _u: object, sock: object) -> None:
        with self._bytes_lock:
            moved = tcp_wire_bytes(sock)  # type: ignore[arg-type]
            self._closed_bytes += (moved if moved is not None else 0) + FIN_BYTES
    def _connected(self, client: mqtt.Client, _u: object, _flags: object, reason: mqtt.ReasonCode,
                   _props: object) -> None:
        if reason.is_failure:
            self._next_delay()
            self.on_connection(False, f"broker refused the connection: {reason}")
            return
        self.connected = True
        self._attempt = 0
        self._next_delay()
        client.subscribe(wire.topic(self.clinic_id, "config"), qos=1)
        self.announce()
        self.on_connection(True, "connected")

    def announce(self) -> None:
        """The birth message (retained): online, and how long the agent may stay quiet (`quiet_max_s`)."""
        birth = wire.Status(v=1, clinic=self.clinic_id, state="online", boot=self.boot, agent=__version__,
                            quiet_max_s=self.quiet_max_s)
        self.client.publish(wire.topic(self.clinic_id, "status"), wire.encode(birth), qos=1, retain=True,
                            properties=self._expiry)

    def _connect_failed(self, _client: mqtt.Client, _u: object) -> None:
        with self._bytes_lock:
            self._closed_bytes += 3 * SYN_BYTES  # the SYN and its retries, an estimate: the attempt left no counters
        self._next_delay()
        self.on_connection(False, "cannot reach the broker")

    def _disconnected(self, _client: mqtt.Client, _u: object, _flags: object, reason: mqtt.ReasonCode,
                      _props: object) -> None:
        self.connected = False
        self._published_at.clear()
        self._next_delay()
        cause = "keepalive timeout or link lost" if reason.value in (7, 0x8D, 0x80) else str(reason)
        self.on_connection(False, cause)

    def _published(self, client: mqtt.Client, _u: object, mid: int, reason: mqtt.ReasonCode,
                   _props: Properties | None) -> None:
        sent = self._published_at.pop(mid, None)
        if sent is not None:
            # paho 2.2 times its keepalive from its last PINGREQ only: the time of the last packet out is not
            # updated when a write empties its queue (eclipse-paho/paho.mqtt.python#813), so it pings every
            # keepalive however often it publishes; over TLS about 200 bytes each, 3 MB a month at the
            # default 180 s. A PUBACK shows the publish went out no earlier than when it was handed over.
            if isinstance(last_out := getattr(client, "_last_msg_out", None), float) and sent > last_out:
                client._last_msg_out = sent
        self.on_acked(mid, not reason.is_failure, str(reason))

    def _message(self, _client: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self.on_config(message.topic, message.payload)

    def _next_delay(self) -> None:
        delay = backoff_delay(self._attempt, self.config.reconnect_min_s, self.config.reconnect_max_s, self.rng)
        self._attempt += 1
        # paho waits min_delay first after a reset; setting both ends makes that the jittered value.
        self.client.reconnect_delay_set(delay, delay)
