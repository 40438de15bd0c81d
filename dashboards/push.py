"""`clinicwatch-collector grafana push`: install ClinicWatch's data sources, folder and dashboards in a
running Grafana through its HTTP API, with grafana-client (the maintained client; grafana-api is dead).

Idempotent: each object is read first and written only when it differs, so a second push changes
nothing, and a changed dashboard is updated in place (by uid), never duplicated.

grafana-client brings niquests, which installs urllib3-future under the import name `urllib3`, the
one influxdb-client uses; so it lives in its own extra (`clinicwatch[grafana]`), to be installed in a
virtual environment of its own, apart from the collector's (dashboards/README.md).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
# What a push owns in a data source; other settings made in Grafana's UI are kept.
_DS_KEYS = ("name", "type", "access", "url", "jsonData")


class PushError(Exception):
    pass


@dataclass
class Targets:
    influx_url: str
    database: str
    prometheus_url: str
    influx_token: str | None = None  # InfluxDB 2.x, read with InfluxQL through a DBRP mapping


def data_sources(targets: Targets) -> list[dict[str, Any]]:
    """The provisioning file's data sources (dashboards/provisioning), pointed at `targets`."""
    document = yaml.safe_load((HERE / "provisioning" / "datasources" / "clinicwatch.yaml").read_text())
    out = []
    for source in document["datasources"]:
        source = copy.deepcopy(source)
        if source["type"] == "influxdb":
            source["url"] = targets.influx_url
            source["jsonData"]["dbName"] = targets.database
            if targets.influx_token is not None:
                source["jsonData"]["httpHeaderName1"] = "Authorization"
                source["secureJsonData"] = {"httpHeaderValue1": f"Token {targets.influx_token}"}
        elif source["type"] == "prometheus":
            source["url"] = targets.prometheus_url
        out.append(source)
    return out


def folder() -> tuple[str, str]:
    """(uid, title) of the dashboards' folder: the provisioning file's, so both ways put them in one place."""
    document = yaml.safe_load((HERE / "provisioning" / "dashboards" / "clinicwatch.yaml").read_text())
    provider = document["providers"][0]
    return provider["folderUid"], provider["folder"]


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((HERE / "grafana").glob("*.json"))]


def _missing(exc: Exception) -> bool:
    return getattr(exc, "status_code", None) == 404


def push(api: Any, targets: Targets) -> list[tuple[str, str, str]]:
    """(kind, uid, what was done: created | updated | unchanged) for each object."""
    from grafana_client.client import GrafanaClientError

    done: list[tuple[str, str, str]] = []
    for source in data_sources(targets):
        try:
            current = api.datasource.get_datasource_by_uid(source["uid"])
        except GrafanaClientError as exc:
            if not _missing(exc):
                raise
            api.datasource.create_datasource(source)
            done.append(("datasource", source["uid"], "created"))
            continue
        wanted = {k: source[k] for k in _DS_KEYS if k in source}
        have = {k: current.get(k) for k in wanted}
        if "jsonData" in wanted:  # only the settings a push owns; others made in Grafana stay
            have["jsonData"] = {k: (current.get("jsonData") or {}).get(k) for k in wanted["jsonData"]}
        if have == wanted:
            done.append(("datasource", source["uid"], "unchanged"))
            continue
        merged = {**current, **wanted, "jsonData": {**(current.get("jsonData") or {}), **wanted.get("jsonData", {})}}
        if "secureJsonData" in source:
            merged["secureJsonData"] = source["secureJsonData"]
        api.datasource.update_datasource_by_uid(source["uid"], merged)
        done.append(("datasource", source["uid"], "updated"))
    folder_uid, folder_title = folder()
    try:
        api.folder.get_folder(folder_uid)
        done.append(("folder", folder_uid, "unchanged"))
    except GrafanaClientError as exc:
        if not _missing(exc):
            raise
        api.folder.create_folder(folder_title, uid=folder_uid)
        done.append(("folder", folder_uid, "created"))
    for board in dashboards():
        uid = board["uid"]
        try:
            current = api.dashboard.get_dashboard(uid)
        except GrafanaClientError as exc:
            if not _missing(exc):
                raise
            current = None
        if current is not None:
            have = {k: v for k, v in current["dashboard"].items() if k not in ("id", "version")}
            if have == board and current.get("meta", {}).get("folderUid") == folder_uid:
                done.append(("dashboard", uid, "unchanged"))
                continue
        api.dashboard.update_dashboard({"dashboard": {**board, "id": None}, "folderUid": folder_uid,
                                        "overwrite": True, "message": "clinicwatch-collector grafana push"})
        done.append(("dashboard", uid, "created" if current is None else "updated"))
    return done


def main(url: str, token_file: Path, targets: Targets) -> int:
    """The command: prints one line per object; errors name what failed."""
    import sys

    try:
        from grafana_client import GrafanaApi
        from grafana_client.client import GrafanaException
    except ImportError:
        print("grafana push needs grafana-client: install clinicwatch[grafana] in its own virtual environment "
              "(dashboards/README.md)", file=sys.stderr)
        return 2
    try:
        token = token_file.read_text().strip()
    except OSError as exc:
        print(f"{token_file}: cannot read the token: {exc.strerror}", file=sys.stderr)
        return 2
    if not token:
        print(f"{token_file}: empty; put a Grafana service account token in it", file=sys.stderr)
        return 2
    api = GrafanaApi.from_url(url, credential=token)
    try:
        done = push(api, targets)
    except (GrafanaException, OSError) as exc:
        print(f"grafana push to {url} failed: {exc}", file=sys.stderr)
        return 1
    for kind, uid, what in done:
        print(f"{kind} {uid}: {what}")
    return 0
