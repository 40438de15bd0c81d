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
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def record_line(measurement: str, clinic_id: str, time_ms: int, tags: Mapping[str, str],
                fields: Mapping[str, object]) -> str:
    all_tags = {"clinic": clinic_id, **tags}
    tag_text = "".join(f",{k.translate(_TAG)}={v.translate(_TAG)}" for k, v in sorted(all_tags.items()) if v != "")
    field_text = ",".join(f"{k}={_field(v)}" for k, v in fields.items())
    return f"{measurement.translate(_MEASUREMENT)}{tag_text} {field_text} {time_ms}"


def sample_line(sample: wire.Sample, clinic_id: str, time_ms: int, extra_tags: Mapping[str, str] = {}) -> str:
    return record_line(sample.m, clinic_id, time_ms, {**extra_tags, **sample.tags}, sample.f)


def telemetry_lines(message: wire.Telemetry, received_ms: int,
                    extra_tags: Mapping[str, str] = {}) -> Iterable[str]:
    for sample in message.samples:
        when = wire.effective_time(sample, message.mono_now, received_ms)
        yield sample_line(sample, message.clinic, when, extra_tags)
