"""Slack incoming webhooks: the subject in bold, then the text (Slack's mrkdwn)."""

from __future__ import annotations

from collector.alerts.channels import Delivery, Message, http_send


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Slack:
    name = "slack"

    def __init__(self, timeout_s: float = 10) -> None:
        self.timeout_s = timeout_s

    def send(self, message: Message, address: str) -> Delivery:
        body = {"text": f"*{_escape(message.subject)}*\n{_escape(message.text)}"}
        return http_send("POST", address, self.timeout_s, json=body)
