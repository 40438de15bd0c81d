"""HTTP(S) reachability of a service: status, connect, TLS handshake and time to first byte,
certificate days to expiry. httpx's trace hooks time each phase of one fresh connection.

A fresh TLS handshake carries the server's certificate chain, a few kilobytes each time, which a
clinic pays for every few minutes. So each check offers a TLS session of an earlier one (TLS 1.3
tickets, or 1.2 session ids): a server that accepts resumes without sending its certificate again
(`tls_resumed`). A full handshake is made at least every `FULL_HANDSHAKE_S`, so that a certificate
changed or expiring on the server is seen, verified and dated (`cert_days_left` on a resumed
session is the certificate of the last full handshake).

The session offered is replaced by a newer one after a full handshake, once it has lived half its
lifetime (the server's ticket hint, else its timeout), or at every check with a server that resumes
a session once only; not at every check, since reading a connection's session leaks a copy of it in
CPython 3.11 and 3.12 (python/cpython#116810, mended in later 3.12 and 3.13 releases, not in 3.11):
about 4.4 KiB a read here (3.11.7, heaptrack): two reads a check, as before, were 0.8 MiB a day at one
check every 15 minutes."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from msgspec import Meta

from agent import __version__
from agent.probes.base import (
    Interval,
    Measured,
    ProbeContext,
    ProbeFailure,
    ProbeSpec,
    Timeout,
    Url,
    count_failed_connect,
    count_tcp,
    load_httpx,
)
from agent.probes.tcp import connect_failure

if TYPE_CHECKING:
    import httpx

X509_V_ERR_CERT_HAS_EXPIRED = 10
FULL_HANDSHAKE_S = 6 * 3600


RESULT_FIELDS = {
    "status": "int: HTTP status", "http_version": "str",
    "connect_ms": "float: TCP handshake", "tls_ms": "float: TLS handshake",
    "ttfb_ms": "float: request sent to response headers received",
    "cert_days_left": "float: days until the server certificate expires",
    "tls_resumed": "bool: the TLS session of an earlier check was resumed (no certificate sent)",
}
REASONS = {
    "http_5xx": "the service answered with a server error", "http_status": "another status outside `expect_status`",
    "cert_expired": "the certificate has expired", "cert_invalid": "the certificate is not trusted or not for this host",
    "cert_expiring": "the certificate expires within `cert_warn_days` (success)", "tls_error": "TLS failed",
    "refused": "the port is closed", "unreachable": "destination unreachable", "no_route": "no route",
    "reset": "connection reset", "connect_error": "another connect error", "http_error": "another HTTP failure",
}


class HttpSpec(ProbeSpec, kw_only=True, tag="http"):
    url: Annotated[Url, Meta(description="the service's health or landing URL")]
    method: Annotated[Literal["GET", "HEAD"], Meta(description="HEAD saves the body's bytes")] = "GET"
    expect_status: Annotated[list[int], Meta(description="accepted statuses; default 200-399")] = []
    verify_tls: Annotated[bool, Meta(description="check the certificate chain and name")] = True
    ca_file: Annotated[Path | None, Meta(description="CA bundle for services with a private CA")] = None
    cert_warn_days: Annotated[int, Meta(ge=0, description="say `cert_expiring` this many days ahead")] = 14
    # A check is ~2.3 KB on the wire when the server resumes its TLS session, ~3.1 KB with a full handshake
    # (bench.probe_round): every 15 minutes is 6.6-9 MB a month; every 5 minutes was 20-27 MB, the largest part
    # of a clinic's data plan. A cut link is seen by the ICMP rounds each minute; this check answers the
    # slower question, whether the service itself and the path to it (DNS, TLS, proxies) still work.
    interval_s: Interval = 900
    timeout_s: Timeout = 15


class _Resumption:
    """One check's TLS context, kept between runs, offering the last session to the next connection."""

    def __init__(self, spec: HttpSpec) -> None:
        self.context = ssl.create_default_context(cafile=str(spec.ca_file) if spec.ca_file else None)
        if not spec.verify_tls:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        self.session: ssl.SSLSession | None = None
        self.full_at = float("-inf")  # monotonic time of the last full handshake
        self.offered = False  # the held session was offered to the connection being made
        self.resumptions = 0  # times the held session was resumed
        self.single_use = False  # the server resumes a session once only: take the new one at every check
        holder = self

        # The standard library's SSLContext has no default session for new connections, and httpx
        # cannot pass one; the class the context makes its TLS objects with can (a subclass of the
        # context itself would make anyio do the wrapping in a thread). That class's constructor,
        # `_create`, is private to CPython (3.7 to 3.13 at least): where it is missing, every check
        # makes a full handshake, as before resumption, and measures the same.
        if not callable(getattr(ssl.SSLObject, "_create", None)):
            return

        class _Resuming(ssl.SSLObject):
            @classmethod
            def _create(cls, incoming: Any, outgoing: Any, server_side: bool = False, server_hostname: Any = None,
                        session: Any = None, context: Any = None) -> Any:
                if session is None and not server_side:
                    session = holder.offer()
                return super()._create(incoming, outgoing, server_side, server_hostname, session, context)

        self.context.sslobject_class = _Resuming

    def offer(self) -> ssl.SSLSession | None:
        offered = self.session if time.monotonic() - self.full_at < FULL_HANDSHAKE_S else None
        self.offered = offered is not None
        return offered

    def keep(self, ssl_object: ssl.SSLObject) -> bool:
        """Take the connection's session (one read of `ssl_object.session`) when the held one is refused,
        past half its lifetime, or single-use (the module's docstring says why not always); True when the
        connection resumed an earlier session."""
        resumed = bool(ssl_object.session_reused)
        young = self.session is not None and not past_half_life(self.session, time.time())
        if resumed:
            self.resumptions += 1
        else:
            self.full_at = time.monotonic()
            if self.offered and self.resumptions and young:
                # A session that resumed, offered again within its lifetime, refused. A server restarted
                # with new ticket keys looks the same: the cost of the mistake is one read per check.
                self.single_use = True
        if not (resumed and young and not self.single_use):
            session = ssl_object.session
            if session is not None:
                self.session, self.resumptions = session, 0
        self.offered = False
        return resumed


def past_half_life(session: ssl.SSLSession, now: float) -> bool:
    """Whether `session` has lived half its lifetime at `now` (epoch seconds): a TLS 1.3 ticket's is the
    server's hint, a TLS 1.2 session's its timeout."""
    lifetime = session.ticket_lifetime_hint or session.timeout
    return now - session.time >= lifetime / 2


def _tls(spec: HttpSpec, ctx: ProbeContext) -> _Resumption | None:
    if not spec.url.startswith("https:"):
        return None
    key = ("http_tls", spec.url, spec.verify_tls, str(spec.ca_file))
    if key not in ctx.memory:
        ctx.memory[key] = _Resumption(spec)
    return ctx.memory[key]


def _cause(exc: BaseException, kind: type) -> Any:
    seen = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _failure_of(exc: httpx.HTTPError, spec: HttpSpec, fields: dict) -> ProbeFailure:
    httpx = load_httpx()  # with the first HTTP check, not by an agent without one

    cert = _cause(exc, ssl.SSLCertVerificationError)
    if cert is not None:
        reason = "cert_expired" if cert.verify_code == X509_V_ERR_CERT_HAS_EXPIRED else "cert_invalid"
        return ProbeFailure(reason, f"{spec.url}: {cert.verify_message}", fields)
    if _cause(exc, ssl.SSLError) is not None:
        return ProbeFailure("tls_error", f"{spec.url}: {_cause(exc, ssl.SSLError)}", fields)
    os_error = _cause(exc, OSError)
    if isinstance(exc, httpx.ConnectError) and os_error is not None and os_error.errno:
        return connect_failure(os_error, spec.url, fields)
    if isinstance(exc, httpx.TimeoutException):
        return ProbeFailure("timeout", f"{spec.url}: {type(exc).__name__}", fields)
    return ProbeFailure("http_error", f"{spec.url}: {type(exc).__name__}: {exc}", fields)


async def probe(spec: HttpSpec, ctx: ProbeContext) -> Measured:
    httpx = load_httpx()  # with the first HTTP check, not by an agent without one

    marks: dict[str, float] = {}

    async def trace(event: str, info: dict) -> None:
        marks[event] = time.perf_counter()

    def span(start: str, end: str) -> float | None:
        return round((marks[end] - marks[start]) * 1000, 3) if start in marks and end in marks else None

    headers = {"User-Agent": f"clinicwatch-agent/{__version__}"}
    resumption = _tls(spec, ctx)
    resumed = None
    async with httpx.AsyncClient(verify=resumption.context if resumption else True, trust_env=False,
                                 timeout=spec.timeout_s, headers=headers) as client:
        try:
            async with client.stream(spec.method, spec.url, extensions={"trace": trace}) as response:
                stream = response.extensions.get("network_stream")
                ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
                peer_cert = ssl_object.getpeercert() if ssl_object is not None else None
                if ssl_object is not None and resumption is not None:
                    resumed = resumption.keep(ssl_object)
                count_tcp(stream.get_extra_info("socket") if stream is not None else None)
        except httpx.HTTPError as exc:
            connect_ms = span("connection.connect_tcp.started", "connection.connect_tcp.complete")
            if connect_ms is None:
                count_failed_connect(answered=not isinstance(exc, httpx.TimeoutException))
            else:  # opened, then failed (TLS, or the request): what moved is not known; the handshake is
                count_tcp(None)
            raise _failure_of(exc, spec, {} if connect_ms is None else {"connect_ms": connect_ms}) from None
    fields = {
        "status": response.status_code,
        "connect_ms": span("connection.connect_tcp.started", "connection.connect_tcp.complete"),
        "tls_ms": span("connection.start_tls.started", "connection.start_tls.complete"),
        "ttfb_ms": span("http11.send_request_body.complete", "http11.receive_response_headers.complete"),
        "http_version": response.http_version,
        "tls_resumed": resumed,
    }
    if peer_cert and "notAfter" in peer_cert:
        fields["cert_days_left"] = round((ssl.cert_time_to_seconds(peer_cert["notAfter"]) - time.time()) / 86400, 2)
    fields = {k: v for k, v in fields.items() if v is not None}
    accepted = spec.expect_status or range(200, 400)
    if response.status_code not in accepted:
        reason = "http_5xx" if response.status_code >= 500 else "http_status"
        raise ProbeFailure(reason, f"{spec.url} answered {response.status_code} {response.reason_phrase}", fields)
    if "cert_days_left" in fields and fields["cert_days_left"] < spec.cert_warn_days:
        return Measured(fields, "cert_expiring", f"certificate expires in {fields['cert_days_left']:.1f} days")
    return Measured(fields)
