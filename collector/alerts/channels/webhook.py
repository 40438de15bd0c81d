"""A generic JSON webhook: POST of the message's facts and texts, with the notification's key as the
`Idempotency-Key` header and the `key` field."""

from __future__ import annotations

from collector.alerts.channels import Delivery, Message, http_send


class Webhook:
    name = "webhook"

    def __init__(self, timeout_s: float = 10) -> None:
        self.timeout_s = timeout_s

    def send(self, message: Message, address: str) -> Delivery:
        body = {**message.doc, "key": message.key, "lang": message.lang, "subject": message.subject,
                "text": message.text}
        return http_send("POST", address, self.timeout_s, json=body, headers={"Idempotency-Key": message.key})
