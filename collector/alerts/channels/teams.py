"""Microsoft Teams through a Workflows webhook (Office 365 connectors are retired): an Adaptive Card
with the subject and the text, in the message envelope Workflows' "post to a channel when a webhook
request is received" template reads."""

from __future__ import annotations

from collector.alerts.channels import Delivery, Message, http_send


class Teams:
    name = "teams"

    def __init__(self, timeout_s: float = 10) -> None:
        self.timeout_s = timeout_s

    def send(self, message: Message, address: str) -> Delivery:
        card = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4", "lang": message.lang,
                "body": [{"type": "TextBlock", "text": message.subject, "weight": "Bolder", "size": "Medium",
                          "wrap": True},
                         *({"type": "TextBlock", "text": line, "wrap": True} for line in message.text.split("\n")
                           if line.strip())]}
        body = {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
        return http_send("POST", address, self.timeout_s, json=body)
