"""A small HTTP(S) server for probe tests: chosen statuses, sized downloads, uploads.

    /status/<code>        answers with that status
    /download?bytes=N     N bytes (honours Range: bytes=0-K)
    /upload               POST: reads and discards the body, answers 204 with the byte count
"""

from __future__ import annotations

import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/status/"):
            self._answer(int(url.path.rsplit("/", 1)[1]), b"status page\n")
        elif url.path == "/download":
            size = int(urllib.parse.parse_qs(url.query).get("bytes", ["1000000"])[0])
            wanted = self.headers.get("Range", "")
            if wanted.startswith("bytes=0-"):
                size = min(size, int(wanted.split("-")[1]) + 1)
            self.send_response(206 if wanted else 200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = b"\xa5" * 65536
            while size > 0:
                self.wfile.write(block[:min(size, len(block))])
                size -= len(block)
        else:
            self._answer(404, b"not found\n")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        left = int(self.headers.get("Content-Length", "0"))
        self.server.uploaded += left  # type: ignore[attr-defined]
        while left > 0:
            left -= len(self.rfile.read(min(left, 65536)))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class WebServer:
    def __init__(self, host: str = "127.0.0.1", cert: tuple[Path, Path] | None = None, tls_options: int = 0) -> None:
        """`tls_options`: ssl.OP_* flags added to the server's TLS context (ssl.OP_NO_TICKET: no session
        tickets)."""
        self.server = ThreadingHTTPServer((host, 0), _Handler)
        self.server.daemon_threads = True
        self.server.uploaded = 0  # type: ignore[attr-defined]
        if cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*cert)
            context.options |= tls_options
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.host, self.port = host, self.server.server_address[1]
        self.scheme = "https" if cert else "http"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    @property
    def uploaded(self) -> int:
        return self.server.uploaded  # type: ignore[attr-defined]

    def __enter__(self) -> "WebServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
