"""A stand-in for Grafana's HTTP API, for testing `grafana push`: Grafana's server cannot be installed
here. It serves only the endpoints the push calls, as Grafana 11 answers them (status codes, bodies,
upsert by uid, versions), keeps what it is sent, and logs every request.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class GrafanaStub:
    def __init__(self, token: str) -> None:
        self.token = token
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}  # uid: {"dashboard": ..., "folderUid": ...}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with stub.lock:
                    stub.requests.append((method, self.path))
                    if self.path != "/api/health" and self.headers.get("Authorization") != f"Bearer {stub.token}":
                        self._answer(401, {"message": "Unauthorized"})
                        return
                    code, answer = stub.route(method, self.path, body)
                self._answer(code, answer)

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._handle("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GrafanaStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/api/health":
            return 200, {"database": "ok", "version": "11.6.0"}
        if path.startswith("/api/datasources"):
            uid = path.removeprefix("/api/datasources/uid/") if path.startswith("/api/datasources/uid/") else None
            if method == "GET" and uid is not None:
                if uid not in self.datasources:
                    return 404, {"message": "Data source not found"}
                return 200, self.datasources[uid]
            if method == "POST" and path == "/api/datasources":
                if body["uid"] in self.datasources:
                    return 409, {"message": "data source with the same uid already exists"}
                stored = {**body, "id": len(self.datasources) + 1, "version": 1}
                stored.pop("secureJsonData", None)  # Grafana never returns secrets
                self.datasources[body["uid"]] = stored
                return 200, {"datasource": stored, "id": stored["id"], "message": "Datasource added"}
            if method == "PUT" and uid is not None:
                if uid not in self.datasources:
                    return 404, {"message": "Data source not found"}
                stored = {**body, "id": self.datasources[uid]["id"], "version": self.datasources[uid]["version"] + 1}
                stored.pop("secureJsonData", None)
                self.datasources[uid] = stored
                return 200, {"datasource": stored, "message": "Datasource updated"}
        if path.startswith("/api/folders"):
            if method == "GET":
                uid = path.removeprefix("/api/folders/")
                if uid not in self.folders:
                    return 404, {"message": "folder not found"}
                return 200, self.folders[uid]
            if method == "POST" and path == "/api/folders":
                uid = body.get("uid")
                if uid in self.folders:
                    return 409, {"message": "a folder with the same uid already exists"}
                self.folders[uid] = {"uid": uid, "title": body["title"], "id": len(self.folders) + 1, "version": 1}
                return 200, self.folders[uid]
        if method == "GET" and path.startswith("/api/dashboards/uid/"):
            uid = path.removeprefix("/api/dashboards/uid/")
            if uid not in self.dashboards:
                return 404, {"message": "Dashboard not found"}
            saved = self.dashboards[uid]
            return 200, {"dashboard": saved["dashboard"], "meta": {"folderUid": saved["folderUid"], "slug": uid}}
        if method == "POST" and path == "/api/dashboards/db":
            board = dict(body["dashboard"])
            uid = board["uid"]
            if body.get("folderUid") and body["folderUid"] not in self.folders:
                return 400, {"message": "folder not found"}
            old = self.dashboards.get(uid)
            if old is not None and not body.get("overwrite"):
                return 412, {"message": "A dashboard with the same uid already exists", "status": "name-exists"}
            board["id"] = old["dashboard"]["id"] if old else len(self.dashboards) + 1
            board["version"] = old["dashboard"]["version"] + 1 if old else 1
            self.dashboards[uid] = {"dashboard": board, "folderUid": body.get("folderUid")}
            return 200, {"id": board["id"], "uid": uid, "status": "success", "version": board["version"]}
        return 404, {"message": "Not found"}
