"""An SMS gateway over HTTP, described by a request template so that any local gateway fits (Kannel,
playSMS, a modem's own API, a vendor's REST API): method, URL, form or JSON body, fields whose values
may name `{to}`, `{text}` and `{key}`, and an authentication header read from a file.

    sms:
      method: POST
      url: http://sms-gw.example.org/api/send
      body: form            # form | json | query (fields in the URL, for GET gateways)
      fields: {to: "{to}", message: "{text}", reference: "{key}"}
      auth_header: Authorization
      auth_file: /etc/clinicwatch/sms-token   # e.g. "Bearer 1a2b..."
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from collector.alerts.channels import Delivery, Message, http_send

PLACES = ("to", "text", "key")


class SmsGateway(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Literal["GET", "POST", "PUT"] = "POST"
    url: str = Field(pattern=r"^https?://", description="the gateway's URL; may name {to}, {text}, {key}")
    body: Literal["form", "json", "query"] = "form"
    fields: dict[str, str] = Field(default_factory=lambda: {"to": "{to}", "text": "{text}"})
    headers: dict[str, str] = Field(default_factory=dict)
    auth_header: str | None = None
    auth_file: Path | None = Field(default=None, description="the auth header's value, read from this file")
    timeout_s: float = Field(default=10, gt=0)

    @field_validator("fields")
    @classmethod
    def _known_places(cls, fields: dict[str, str]) -> dict[str, str]:
        for name, template in fields.items():
            try:
                template.format(**dict.fromkeys(PLACES, ""))
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"field {name!r}: {template!r} may only name {{to}}, {{text}} and {{key}} "
                                 f"({exc})") from None
        return fields


class Sms:
    name = "sms"

    def __init__(self, gateway: SmsGateway) -> None:
        self.gateway = gateway

    def send(self, message: Message, address: str) -> Delivery:
        g = self.gateway
        values = {"to": address, "text": message.sms, "key": message.key}
        fields = {name: template.format(**values) for name, template in g.fields.items()}
        headers = dict(g.headers)
        if g.auth_header and g.auth_file:
            try:
                headers[g.auth_header] = g.auth_file.read_text().strip()
            except OSError as exc:
                return Delivery("retry", f"cannot read sms.auth_file {g.auth_file}: {exc}")
        kw: dict[str, Any] = {"headers": headers}
        if g.body == "json":
            kw["json"] = fields
        elif g.body == "form":
            kw["data"] = fields
        else:
            kw["params"] = fields
        url = g.url.replace("{to}", address).replace("{key}", message.key)
        return http_send(g.method, url, g.timeout_s, **kw)
