"""The collector's HTTP endpoint: `/metrics` (Prometheus; `?name[]=<series>` for some only), a small read-only JSON API of clinic state, and the status page (`/`, `/clinics/<id>`, `/incidents/<id>`: collector/web/statuspage.py).

    GET /api/v1/clinics                   every clinic: state, since, cause, reason, last heard, incident
    GET /api/v1/clinics/<id>              one clinic, with its last 50 state changes and its outages of 30 days
    GET /api/v1/incidents[?state=open]    incidents (open ones, or those of the last 30 days)
    GET /api/v1/incidents/<id>
    GET /api/v1/outages?clinic=&since=&until=   outage records (times in UTC ms)

Times are UTC milliseconds. Served by the standard library's threading HTTP server: a handful of
operators' requests, not a web application.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("clinicwatch.collector")
DAY_MS = 86_400_000


class Api:
    def __init__(self, host: str, port: int, metrics: CollectorRegistry, state: Any | None,
                 status: Any | None = None, auth: tuple[str, str] | None = None) -> None:
        """`status`: the status page (collector.web.statuspage) when served; `auth`: (user, password)
        asked on the status page and the JSON API, not on /metrics."""
        self.metrics, self.state, self.status = metrics, state, status
        self.auth = None if auth is None else "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the standard library's name
                api.handle(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, name="http", daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        names = urllib.parse.parse_qs(url.query).get("name[]")
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/") if p]
        try:
            if parts == ["metrics"]:
                # `?name[]=a&name[]=b`: only those series (Prometheus' convention), without building the
                # per-clinic families when they are not asked for.
                registry = self.metrics.restricted_registry(names) if names else self.metrics
                self._send(request, 200, generate_latest(registry), CONTENT_TYPE_LATEST)
                return
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if self.auth is not None and not hmac.compare_digest(given, self.auth.encode()):
                request.send_response(401)
                request.send_header("WWW-Authenticate", 'Basic realm="ClinicWatch", charset="UTF-8"')
                request.send_header("Content-Length", "0")
                request.end_headers()
                return
            if self.status is not None and self.state is not None and parts[:1] != ["api"]:
                # every other path is the page's, its unknown ones a 404 page in the viewer's language
                code, page, headers = self.status.respond(parts, query, request.headers)
                self._send(request, code, page.encode(), "text/html; charset=utf-8", headers)
                return
            if parts[:2] != ["api", "v1"] or len(parts) < 3:
                raise _NotFound("no such page: try /metrics or /api/v1/clinics")
            if self.state is None:
                raise _NotFound("this collector does not run the state engine (state.engine: false)")
            body = self._api(parts[2:], query)
            self._send(request, 200, json.dumps(body).encode(), "application/json")
        except _NotFound as exc:
            self._send(request, 404, json.dumps({"error": str(exc)}).encode(), "application/json")
        except ValueError as exc:
            self._send(request, 400, json.dumps({"error": str(exc)}).encode(), "application/json")
        except Exception:  # noqa: BLE001 - one bad request must not take the endpoint down; logged
            log.exception("HTTP request failed", extra={"fields": {"path": url.path}})
            self._send(request, 500, json.dumps({"error": "internal error, logged"}).encode(), "application/json")

    def _api(self, parts: list[str], query: dict[str, str]) -> Any:
        state, db = self.state, self.state.db
        month_ago = time.time_ns() // 1_000_000 - 30 * DAY_MS
        if parts == ["clinics"]:
            return state.clinics()
        if parts[0] == "clinics" and len(parts) == 2:
            clinic = state.clinic(parts[1])
            if clinic is None:
                raise _NotFound(f"no clinic {parts[1]!r} in the registry")
            return {**clinic, "transitions": db.transitions(clinic=parts[1], limit=50),
                    "outages": db.outages(clinic=parts[1], since=month_ago)}
        if parts == ["incidents"]:
            if query.get("state", "all") not in ("open", "all"):
                raise ValueError("state is open or all")
            return db.incidents(open_only=True) if query.get("state") == "open" else db.incidents(since=month_ago)
        if parts[0] == "incidents" and len(parts) == 2:
            incident = db.incident(parts[1])
            if incident is None:
                raise _NotFound(f"no incident {parts[1]!r}")
            return incident
        if parts == ["outages"]:
            return db.outages(clinic=query.get("clinic"), since=_ms(query, "since"), until=_ms(query, "until"))
        raise _NotFound("no such resource: clinics, incidents, outages")

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, code: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        request.send_response(code)
        request.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


class _NotFound(Exception):
    pass


def _ms(query: dict[str, str], key: str) -> int | None:
    if key not in query:
        return None
    try:
        return int(query[key])
    except ValueError:
        raise ValueError(f"{key} is a time in UTC milliseconds") from None
