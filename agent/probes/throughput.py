"""Occasional throughput test: download and/or upload a bounded amount over HTTP, within a monthly budget.

Clinics pay for LTE by the byte, so every test is charged to a ledger (per calendar
month, UTC, kept in the agent's state dir) and refused before it starts when it
would overspend. Bytes charged are the payload plus an estimate of HTTP and TCP/IP
overhead; the result reports what this test spent and the month's total.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from msgspec import Meta

from agent import __version__
from agent.datause import month_of
from agent.jsonfile import write_json
from agent.probes.base import (
    Interval,
    Measured,
    ProbeContext,
    ProbeFailure,
    ProbeSpec,
    Timeout,
    Url,
    load_httpx,
)

if TYPE_CHECKING:
    import httpx

OVERHEAD = 1.04  # TCP/IP headers and ACKs on ~1460-byte segments
REQUEST_OVERHEAD_BYTES = 800  # TCP handshake, HTTP request and response headers


RESULT_FIELDS = {
    "down_kbps": "float: download goodput", "up_kbps": "float: upload goodput",
    "down_bytes": "int", "up_bytes": "int",
    "test_bytes": "int: bytes this test is charged (payload plus estimated overhead)",
    "spent_month_bytes": "int: charged this calendar month (UTC), this test included",
    "budget_month_bytes": "int: the monthly budget",
}
REASONS = {
    "budget_exhausted": "the test would overspend this month's budget: not run",
    "transfer_failed": "the transfer failed",
}


class ThroughputSpec(ProbeSpec, kw_only=True, tag="throughput"):
    download_url: Annotated[Url | None, Meta(description="GET: a large file or endpoint")] = None
    upload_url: Annotated[Url | None, Meta(description="POST: accepts and discards a body")] = None
    bytes: Annotated[int, Meta(ge=1_000, le=100_000_000, description="per direction")] = 1_000_000
    monthly_budget_mb: Annotated[float, Meta(gt=0, description="data all throughput tests may use per month")] = 200
    verify_tls: Annotated[bool, Meta(description="check the certificate chain and name")] = True
    interval_s: Interval = 6 * 3600
    timeout_s: Timeout = 120

    def __post_init__(self) -> None:
        if not (self.download_url or self.upload_url):
            raise ValueError("set download_url, upload_url or both")


class Ledger:
    """Bytes spent on throughput tests per calendar month, persisted as JSON."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.months: dict[str, int] = {}
        if path is not None and path.exists():
            self.months = {str(k): int(v) for k, v in json.loads(path.read_text()).items()}

    def spent(self, now: float) -> int:
        return self.months.get(month_of(now), 0)

    def charge(self, amount: int, now: float) -> int:
        key = month_of(now)
        self.months = {key: self.months.get(key, 0) + amount}  # older months are not needed
        if self.path is not None:
            write_json(self.path, self.months)
        return self.months[key]


def _cost(payload: int) -> int:
    return int(payload * OVERHEAD) + REQUEST_OVERHEAD_BYTES


async def _download(client: httpx.AsyncClient, url: str, limit: int) -> tuple[int, float]:
    got, first = 0, None
    async with client.stream("GET", url, headers={"Range": f"bytes=0-{limit - 1}"}) as response:
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            first = first or time.perf_counter()
            got += len(chunk)
            if got >= limit:
                break
    return got, (time.perf_counter() - first) if first else 0.0


async def _upload(client: httpx.AsyncClient, url: str, size: int) -> tuple[int, float]:
    block = os.urandom(16_384)  # incompressible, so no proxy or modem flatters the figure

    async def body():
        left = size
        while left > 0:
            yield block[:min(left, len(block))]
            left -= len(block)

    start = time.perf_counter()
    response = await client.post(url, content=body(), headers={"Content-Length": str(size)})
    response.raise_for_status()
    return size, time.perf_counter() - start


async def probe(spec: ThroughputSpec, ctx: ProbeContext) -> Measured:
    ledger = ctx.memory.get("throughput_ledger")
    if ledger is None:
        ledger = Ledger(ctx.state_dir / "throughput-ledger.json" if ctx.state_dir else None)
        ctx.memory["throughput_ledger"] = ledger
    now = time.time()
    budget = int(spec.monthly_budget_mb * 1_000_000)
    planned = sum(_cost(spec.bytes) for url in (spec.download_url, spec.upload_url) if url)
    spent = ledger.spent(now)
    fields: dict = {"budget_month_bytes": budget, "spent_month_bytes": spent}
    if spent + planned > budget:
        raise ProbeFailure("budget_exhausted", f"this test would need {planned} bytes; {spent} of {budget} "
                                               f"already spent this month", fields)
    charged = 0
    httpx = load_httpx()  # with the first throughput test, not by an agent without one

    async with httpx.AsyncClient(verify=spec.verify_tls, trust_env=False, timeout=spec.timeout_s,
                                 headers={"User-Agent": f"clinicwatch-agent/{__version__}"}) as client:
        try:
            for direction, url, run in (("down", spec.download_url, _download), ("up", spec.upload_url, _upload)):
                if not url:
                    continue
                moved, seconds = await run(client, url, spec.bytes)
                charged += _cost(moved)
                fields[f"{direction}_bytes"] = moved
                if seconds > 0:
                    fields[f"{direction}_kbps"] = round(moved * 8 / seconds / 1000, 1)
        except httpx.HTTPError as exc:
            charged += REQUEST_OVERHEAD_BYTES
            fields["spent_month_bytes"] = ledger.charge(charged, now)
            raise ProbeFailure("transfer_failed", f"{type(exc).__name__}: {exc}", fields) from None
    fields["test_bytes"] = charged
    fields["spent_month_bytes"] = ledger.charge(charged, now)
    return Measured(fields)
