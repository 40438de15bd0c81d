"""InfluxDB line protocol for wire samples: one line per sample, escaped by the spec.

Schema: measurement = sample `m`; tags = clinic + the sample's tags (+ registry tags
given by the caller); fields = sample `f`; timestamp = effective time in ms
(wire.effective_time), so unsynchronised clocks are corrected on the way in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import wire

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
    return ",".join([f"{k}={_field(v)}" for k, v in fields.items()])


def record_line(measurement: str, clinic_id: str, time_ms: int, tags: Mapping[str, str],
                fields: Mapping[str, object]) -> str:
    return f"{measurement.translate(_MEASUREMENT)}{_tags(clinic_id, tags)} {_fields(fields)} {time_ms}"


def sample_line(sample: wire.Sample, clinic_id: str, time_ms: int, extra_tags: Mapping[str, str] = {}) -> str:
    return record_line(sample.m, clinic_id, time_ms, {**extra_tags, **sample.tags}, sample.f)


def telemetry_lines(message: wire.Telemetry, received_ms: int,
                    extra_tags: Mapping[str, str] = {}) -> Iterable[str]:
    prefixes: dict[tuple, str] = {}  # a batch repeats the same few series: build each head once
    for sample in message.samples:
        key = (sample.m, tuple(sample.tags.items()))
        head = prefixes.get(key)
        if head is None:
            head = prefixes[key] = sample.m.translate(_MEASUREMENT) + _tags(message.clinic, {**extra_tags,
                                                                                              **sample.tags})
        when = wire.effective_time(sample, message.mono_now, received_ms)
        yield f"{head} {_fields(sample.f)} {when}"
