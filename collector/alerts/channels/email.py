"""Email over SMTP with the standard library's smtplib (STARTTLS or implicit TLS, optional login): a
multipart/alternative message, plain text and HTML, UTF-8, with the notification's key in its
Message-ID so a mail system that de-duplicates drops a copy sent again after a restart.

smtplib rather than aiosmtplib: the dispatcher is a thread that sends one message at a time, so an
asyncio client would only add an event loop around the same exchange."""

from __future__ import annotations

import hashlib
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from collector.alerts.channels import DELIVERED, GIVE_UP, RETRY, Delivery, Message


class SmtpServer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: str = Field(default="starttls", pattern="^(starttls|tls|none)$", description=(
        "starttls (port 587), tls (implicit, port 465) or none (a relay on a trusted network)"))
    username: str | None = None
    password_file: Path | None = None
    sender: str = Field(description='the From address, e.g. "ClinicWatch <alerts@example.org>"')
    timeout_s: float = Field(default=20, gt=0)
    ca_file: Path | None = Field(default=None, description="trust this CA instead of the system's (a private relay)")


class Email:
    name = "email"

    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.server.ca_file) if self.server.ca_file else None)

    def compose(self, message: Message, address: str) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.server.sender
        mail["To"] = address
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        digest = hashlib.sha256(f"{message.key}|{address}".encode()).hexdigest()[:32]
        mail["Message-ID"] = f"<{digest}@clinicwatch>"
        mail["X-ClinicWatch-Key"] = message.key
        mail.set_content(message.text)
        mail.add_alternative(message.html, subtype="html")
        mail["Content-Language"] = message.lang  # after: making the message multipart moves Content-* headers
        return mail

    def send(self, message: Message, address: str) -> Delivery:
        s = self.server
        try:
            if s.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=self._context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
            with smtp:
                if s.security == "starttls":
                    smtp.starttls(context=self._context())
                if s.username:
                    password = s.password_file.read_text().strip() if s.password_file else ""
                    smtp.login(s.username, password)
                refused = smtp.send_message(self.compose(message, address))
        except smtplib.SMTPAuthenticationError as exc:
            # Wrong credentials stay wrong until someone fixes them; retried until the deadline reports it.
            return Delivery(RETRY, f"SMTP login refused ({exc.smtp_code}): check alerts.email.username and "
                                   f"password_file")
        except smtplib.SMTPRecipientsRefused as exc:
            return _reply(exc.recipients.get(address, (550, b"refused")))
        except smtplib.SMTPResponseException as exc:
            return _reply((exc.smtp_code, exc.smtp_error))
        except (smtplib.SMTPException, OSError, socket.timeout) as exc:
            return Delivery(RETRY, f"{type(exc).__name__}: {exc}")
        if address in refused:
            return _reply(refused[address])
        return Delivery(DELIVERED, "accepted by the SMTP server")


def _reply(reply: tuple[int, bytes | str]) -> Delivery:
    code, text = reply
    text = text.decode(errors="replace") if isinstance(text, bytes) else text
    # 5xx is permanent (a refused address, a message the server will never take); 4xx may pass.
    return Delivery(GIVE_UP if code >= 500 else RETRY, f"SMTP {code}: {text}")
