"""A local HTTP server standing in for webhook receivers and SMS gateways in tests: it records every
request (method, path, headers, body) and answers the status codes it is told to, in turn."""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body.decode()))

    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))


class HookServer:
    def __init__(self, answers: list[int] | None = None, port: int = 0) -> None:
        self.answers = list(answers or [])  # status codes to answer first, in turn; then 200
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.hold = threading.Event()  # while cleared, requests wait before answering (to kill a sender mid-send)
        self.hold.set()
        self.serving = False
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with hooks.lock:
                    status = hooks.answers.pop(0) if hooks.answers else 200
                    hooks.requests.append(Request(self.command, self.path, dict(self.headers), body, status))
                hooks.hold.wait(60)
                payload = b'{"ok": true}' if status < 300 else b'{"error": "try later"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _any  # noqa: N815 - the standard library's names

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "HookServer":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.serving = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.hold.set()
        if self.serving:  # shutdown() waits for serve_forever to return
            self.server.shutdown()
            self.serving = False
        self.server.server_close()

    def received(self, path: str | None = None) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if path is None or urllib.parse.urlsplit(r.path).path == path]
