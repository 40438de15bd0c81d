"""Writers of line protocol to InfluxDB: the v1 `/write` endpoint (InfluxDB 1.x)."""

from __future__ import annotations

import urllib.parse
import urllib.request


class InfluxV1Writer:
    def __init__(self, url: str, database: str, timeout_s: float = 10.0) -> None:
        query = urllib.parse.urlencode({"db": database, "precision": "ms"})
        self.endpoint = f"{url.rstrip('/')}/write?{query}"
        self.timeout_s = timeout_s

    def __call__(self, lines: list[str]) -> None:
        if not lines:
            return
        request = urllib.request.Request(self.endpoint, data="\n".join(lines).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            if response.status != 204:
                raise RuntimeError(f"InfluxDB /write answered {response.status}")
