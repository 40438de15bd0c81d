"""Channels: one module each behind one contract, `send(message, address) -> Delivery`.

A channel says what became of one message to one address: delivered, retry (a failure that may pass:
a timeout, a 5xx, a 429, a 4xx SMTP reply) or give up (a failure that will not: a refused address, a
4xx HTTP answer to a well-formed request). The dispatcher (collector.alerts.dispatch) retries with
backoff until the message's deadline and records what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

DELIVERED, RETRY, GIVE_UP = "delivered", "retry", "give_up"


@dataclass(frozen=True)
class Message:
    """One message, rendered in its recipient's language (collector.alerts.texts)."""
    key: str  # the notification log's key: a receiver can drop a copy by it
    subject: str
    text: str  # plain text (email, chat)
    html: str  # email's HTML part
    sms: str  # one SMS segment
    lang: str
    doc: dict[str, Any] = field(default_factory=dict)  # the facts, for webhooks


@dataclass(frozen=True)
class Delivery:
    outcome: str  # delivered | retry | give_up
    detail: str = ""


class Channel(Protocol):
    name: str

    def send(self, message: Message, address: str) -> Delivery: ...


def http_outcome(response: httpx.Response) -> Delivery:
    """An HTTP answer as a Delivery: 2xx delivered; 408, 425, 429 and 5xx retry; other 4xx give up."""
    code = response.status_code
    if 200 <= code < 300:
        return Delivery(DELIVERED, f"HTTP {code}")
    detail = f"HTTP {code}: {response.text[:200]}"
    if code in (408, 425, 429) or code >= 500:
        return Delivery(RETRY, detail)
    return Delivery(GIVE_UP, detail)


def http_send(method: str, url: str, timeout_s: float, **kw: Any) -> Delivery:
    try:
        response = httpx.request(method, url, timeout=timeout_s, **kw)
    except httpx.HTTPError as exc:
        return Delivery(RETRY, f"{type(exc).__name__}: {exc}")
    return http_outcome(response)
