"""Silences: mute messages about some clinics, regions or incidents for a while, without losing the
record (the policy still decides each message and the log keeps it, `muted`).

Kept in a YAML file (`<data_dir>/silences.yaml`, or alerts.silences_file) that `clinicwatch-collector
silence add/list/expire` edits and the running collector re-reads within 10 s:

    silences:
      - id: 7f3a9c1e
        start: 2026-11-29T20:00:00Z
        end: 2026-11-29T22:00:00Z
        regions: [Illes Balears]      # and/or clinics: [...], incidents: [...]
        author: maria
        comment: Movistar works on the Sóller exchange
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import tempfile
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from collector.alerts.policy import Silence
from collector.errors import explain
from wire import yamlio


class SilenceError(ValueError):
    pass


class _Silence(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    start: dt.datetime
    end: dt.datetime
    clinics: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)
    incidents: list[str] = Field(default_factory=list)
    author: str = ""
    comment: str = ""

    @model_validator(mode="after")
    def _sane(self) -> "_Silence":
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a time zone, e.g. 2026-11-29T20:00:00Z")
        if not (self.clinics or self.regions or self.incidents):
            raise ValueError(f"silence {self.id!r} names no clinics, regions or incidents")
        return self


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    silences: list[_Silence] = Field(default_factory=list)


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _read(path: Path) -> _File:
    if not path.exists():
        return _File()
    document = yamlio.load_file(path, "silences", SilenceError) or {}
    try:
        return _File.model_validate(document)
    except ValidationError as exc:
        raise SilenceError(explain(path, exc)) from None


def load_silences(path: Path) -> list[Silence]:
    return [Silence(s.id, _ms(s.start), _ms(s.end), frozenset(s.clinics), frozenset(s.regions),
                    frozenset(s.incidents), s.author, s.comment) for s in _read(path).silences]


def _write(path: Path, document: _File) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"silences": [s.model_dump(mode="json", exclude_defaults=True) | {"start": s.start.isoformat(),
                                                                             "end": s.end.isoformat()}
                         for s in document.silences]}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".silences-")
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(data, out, allow_unicode=True, sort_keys=False)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)  # whole or not at all: the collector never reads half a file


def add(path: Path, start: dt.datetime, end: dt.datetime, clinics: list[str], regions: list[str],
        incidents: list[str], author: str, comment: str) -> _Silence:
    document = _read(path)
    silence = _Silence(id=secrets.token_hex(4), start=start, end=end, clinics=clinics, regions=regions,
                       incidents=incidents, author=author, comment=comment)
    document.silences.append(silence)
    _write(path, document)
    return silence


def expire(path: Path, silence_id: str, now: dt.datetime) -> _Silence:
    document = _read(path)
    for silence in document.silences:
        if silence.id == silence_id:
            silence.end = min(silence.end, max(now, silence.start))
            _write(path, document)
            return silence
    raise SilenceError(f"{path}: no silence {silence_id!r} (clinicwatch-collector silence list shows them)")


def listing(path: Path) -> list[_Silence]:
    return _read(path).silences
