"""Shared fixtures: real servers on free loopback ports, emulated clinic links.

Servers come from Debian packages (see README). Where a binary or root is
missing, the test is skipped with the reason, except under
CLINICWATCH_REQUIRE_SERVERS=1 / CLINICWATCH_REQUIRE_PRIVILEGED=1 (set by .ci/run),
where it fails: CI must never pass by skipping what matters.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from lab.links import EmulatedLink, privileged_reason, sweep_stale
from lab.servers import InfluxDB, Mosquitto, Server, VictoriaMetrics, missing_binaries


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no")


def skip_or_fail(reason: str, required_by: str) -> None:
    if _flag(required_by):
        pytest.fail(f"{reason} ({required_by}=1, so this cannot be skipped)")
    pytest.skip(reason)


def need_binaries(*names: str) -> None:
    missing = missing_binaries(*names)
    if missing:
        skip_or_fail(f"not installed: {', '.join(missing)}", "CLINICWATCH_REQUIRE_SERVERS")


def need_privileges() -> None:
    reason = privileged_reason()
    if reason:
        skip_or_fail(f"emulated links {reason}", "CLINICWATCH_REQUIRE_PRIVILEGED")


def _serve(server: Server) -> Iterator[Server]:
    with server:
        yield server


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Mosquitto]:
    """One anonymous broker for the session; tests use their own topics."""
    need_binaries("mosquitto")
    yield from _serve(Mosquitto())  # type: ignore[misc]


@pytest.fixture(scope="session")
def influxdb_server() -> Iterator[InfluxDB]:
    need_binaries("influxd")
    yield from _serve(InfluxDB())  # type: ignore[misc]


@pytest.fixture
def influxdb(influxdb_server: InfluxDB) -> Iterator[tuple[InfluxDB, str]]:
    """The session's InfluxDB and a fresh database, dropped afterwards."""
    db = f"test_{uuid.uuid4().hex[:10]}"
    influxdb_server.create_database(db)
    yield influxdb_server, db
    influxdb_server.query(f'DROP DATABASE "{db}"', method="POST")


@pytest.fixture(scope="session")
def victoria() -> Iterator[VictoriaMetrics]:
    need_binaries("victoria-metrics")
    yield from _serve(VictoriaMetrics())  # type: ignore[misc]


@pytest.fixture
def start_server() -> Iterator[Callable[[Server], Server]]:
    """Start a server the test configures itself (its own broker to restart, an snmpd with pass scripts)."""
    started: list[Server] = []

    def start(server: Server) -> Server:
        need_binaries(server.name)  # each server's name is its binary's
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.close()


@pytest.fixture(scope="session")
def _lab_links_swept() -> None:
    if privileged_reason() is None:
        sweep_stale()


@pytest.fixture
def emulated_link(_lab_links_swept: None) -> Iterator[Callable[..., EmulatedLink]]:
    """Factory: emulated_link("lte", seed=1) -> a running link, torn down after the test."""
    need_privileges()
    links: list[EmulatedLink] = []

    def make(profile: str = "fibre", **kw: object) -> EmulatedLink:
        link = EmulatedLink(profile, **kw)  # type: ignore[arg-type]
        links.append(link)
        return link.__enter__()

    yield make
    for link in reversed(links):
        link.close()
