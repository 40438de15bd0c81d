"""Writers of line protocol: InfluxDB 1.x's /write, or influxdb-client's v2 API (InfluxDB 2.x/3.x, 1.8+).

A writer takes a list of lines and either stores them all or raises StoreError,
saying whether trying again could help (the database is down or overloaded) or
not (the database refuses these points: they go to dead letters, not round again).
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from collector.config import StoreConfig

Writer = Callable[[list[str]], None]


class StoreError(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class InfluxV1Writer:
    def __init__(self, url: str, database: str, timeout_s: float = 10.0) -> None:
        query = urllib.parse.urlencode({"db": database, "precision": "ns"})
        self.endpoint = f"{url.rstrip('/')}/write?{query}"
        self.timeout_s = timeout_s

    def __call__(self, lines: list[str]) -> None:
        if not lines:
            return
        request = urllib.request.Request(self.endpoint, data="\n".join(lines).encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read(500).decode(errors="replace")
            raise StoreError(f"InfluxDB /write answered {exc.code}: {body}", retryable=exc.code >= 500) from None
        except (urllib.error.URLError, OSError) as exc:
            raise StoreError(f"InfluxDB unreachable: {exc}", retryable=True) from None


class InfluxV2Writer:
    """influxdb-client's write API, synchronous per batch: the collector batches and retries itself,
    because a message is acknowledged to the broker only once its points are stored."""

    def __init__(self, url: str, bucket: str, org: str, token: str | None, timeout_s: float = 10.0) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.client = InfluxDBClient(url=url, token=token or "", org=org, timeout=int(timeout_s * 1000),
                                     retries=0)
        self.api = self.client.write_api(write_options=SYNCHRONOUS)
        self.bucket, self.org = bucket, org

    def __call__(self, lines: list[str]) -> None:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        if not lines:
            return
        try:
            self.api.write(bucket=self.bucket, org=self.org, record=lines, write_precision="ns")
        except ApiException as exc:
            raise StoreError(f"InfluxDB v2 write answered {exc.status}: {str(exc.body)[:500]}",
                             retryable=exc.status is None or exc.status >= 500 or exc.status == 429) from None
        except (HTTPError, OSError) as exc:
            raise StoreError(f"InfluxDB v2 unreachable: {exc}", retryable=True) from None


def make_writer(config: StoreConfig) -> Writer:
    if config.kind == "influx_v1":
        return InfluxV1Writer(config.url, config.database or "", config.timeout_s)
    return InfluxV2Writer(config.url, config.bucket or "", config.org, config.token(), config.timeout_s)
