"""InfluxDB line protocol for wire samples: one line per sample, escaped by the spec.

Schema: measurement = sample `m`; tags = clinic + the sample's tags (+ registry tags
given by the caller); fields = sample `f`; timestamp = effective time in ms
(wire.effective_time), so unsynchronised clocks are corrected on the way in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import wire
from wire.schema import TRUSTED_SYNC

_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
_TAG = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\=", "\n": r"\n"})


def _field(value: object) -> str:
    kind = type(value)
    if kind is float:
        return repr(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return f"{value}i"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _tags(clinic_id: str, tags: Mapping[str, str]) -> str:
    all_tags = {"clinic": clinic_id, **tags}
    return "".join(f",{k.translate(_TAG)}={v.translate(_TAG)}" for k, v in sorted(all_tags.items()) if v != "")


def _fields(fields: Mapping[str, object]) -> str:
    # Keys are contract names ([a-z][a-z0-9_]*): nothing to escape. Floats, the common case, inline.
    return ",".join([f"{k}={v!r}" if type(v) is float else f"{k}={_field(v)}" for k, v in fields.items()])


def record_line(measurement: str, clinic_id: str, time_ms: int, tags: Mapping[str, str],
                fields: Mapping[str, object]) -> str:
    return f"{measurement.translate(_MEASUREMENT)}{_tags(clinic_id, tags)} {_fields(fields)} {time_ms}"


def sample_line(sample: wire.Sample, clinic_id: str, time_ms: int, extra_tags: Mapping[str, str] = {}) -> str:
    return record_line(sample.m, clinic_id, time_ms, {**extra_tags, **sample.tags}, sample.f)


def telemetry_lines(message: wire.Telemetry, received_ms: int, extra_tags: Mapping[str, str] = {},
                    heads: dict[tuple, str] | None = None) -> Iterable[str]:
    """One line per sample. `heads` caches each series' escaped `measurement,tags` across calls
    (a clinic sends the same few series every time); its owner empties it when tags change."""
    prefixes: dict[tuple, str] = {} if heads is None else heads
    clinic, mono_now = message.clinic, message.mono_now
    for sample in message.samples:
        key = (clinic, sample.m, tuple(sample.tags.items()))
        head = prefixes.get(key)
        if head is None:
            head = prefixes[key] = sample.m.translate(_MEASUREMENT) + _tags(clinic, {**extra_tags, **sample.tags})
        when = sample.t if sample.sync in TRUSTED_SYNC else wire.effective_time(sample, mono_now, received_ms)
        yield f"{head} {_fields(sample.f)} {when}"
