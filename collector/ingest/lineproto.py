"""InfluxDB line protocol for wire samples: one line per sample, escaped by the spec.

Schema: measurement = sample `m`; tags = clinic + the sample's tags (+ registry tags
given by the caller); fields = sample `f` (+ `time_bound_ms` for a sample placed by
the agent's monotonic clock); timestamp = effective time (wire.effective_time), so
unsynchronised clocks are corrected on the way in.

Timestamps are written in nanoseconds: the effective time in ms, and below it the
record's identity folded into the last six digits ((crc32(boot) + seq) mod 10^6).
Two different records of one series that fall on the same millisecond (a clock that
stepped back, a backlog placed by one receipt) are two points, not one overwriting
the other, while a record delivered twice lands on its own point again.

Not every string the contract allows can be carried by line protocol so that every
store reads it back the same. Checked against InfluxDB 1.6.7 and VictoriaMetrics
(tests/test_lineproto.py): a tag value ending in a backslash is refused by InfluxDB
(and dropped without an error by VictoriaMetrics); a backslash before a backslash or
before an escaped `,`, ` ` or `=` is read back differently by the two (InfluxDB keeps
`\\`, VictoriaMetrics unescapes it); a line break cannot be written raw (it ends the
line) nor escaped (InfluxDB stores `\n` as two characters). InfluxDB refuses the key
`time`, and the tags the collector adds (clinic and the registry's) are not a
sample's to set. `unstorable()` names such a value so that the collector rejects that
record, with the reason, before storage. An empty tag value is no tag at all in line
protocol: it is left out (absent).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping

import wire
from collector.ingest.agentclock import DRIFT
from wire.schema import TRUSTED_SYNC

_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ "})
_TAG = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\="})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})
# C0 and C1 control characters (line breaks among them): no line protocol reader gives them back.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# In a tag value: a backslash at the end, or before a backslash or a character that must be escaped.
_TAG_BACKSLASH = re.compile(r"\\(?:$|[\\, =])")


COLLECTOR_TAGS = frozenset({"clinic", "region", "isp", "link"})  # set by the collector on every point
TIME_BOUND = "time_bound_ms"  # the collector's field on a record placed by the agent's monotonic clock


def stamp(time_ms: int, boot: str, seq: int = 0) -> int:
    """The point's timestamp in ns: the time in ms, the record's identity in the digits below."""
    return time_ms * 1_000_000 + (zlib.crc32(boot.encode()) + seq) % 1_000_000


def unstorable(tags: Mapping[str, str], fields: Mapping[str, object]) -> str | None:
    """Why this record cannot be stored as it is (`tags.interface: ...`), or None if it can."""
    for key, value in tags.items():
        if key in COLLECTOR_TAGS:
            return f"tags.{key}: the collector sets this tag itself (from the topic and the registry)"
        if key == "time":
            return "tags.time: InfluxDB reserves the key `time`"
        if _CONTROL.search(value):
            return f"tags.{key}: a control character ({_named(value)}) cannot be stored in a tag"
        if _TAG_BACKSLASH.search(value):
            return (f"tags.{key}: {value[-40:]!r} has a backslash at its end or before '\\', ',', ' ' or '=', "
                    "which line protocol cannot carry in a tag")
    for key, value in fields.items():
        if key == "time":
            return "f.time: InfluxDB reserves the key `time`"
        if key == TIME_BOUND:
            return f"f.{TIME_BOUND}: the collector sets this field itself"
        if type(value) is str and _CONTROL.search(value):
            return f"f.{key}: a control character ({_named(value)}) cannot be stored in a string field"
    return None


def _named(value: str) -> str:
    match = _CONTROL.search(value)
    assert match is not None
    return f"U+{ord(match.group()):04X} at {match.start()}"


def _field(value: object) -> str:
    kind = type(value)
    if kind is float:
        return repr(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return f"{value}i"
    return f'"{str(value).translate(_STRING)}"'


def _tags(clinic_id: str, tags: Mapping[str, str]) -> str:
    all_tags = {"clinic": clinic_id, **tags}
    return "".join(f",{k.translate(_TAG)}={v.translate(_TAG)}" for k, v in sorted(all_tags.items()) if v != "")


def _fields(fields: Mapping[str, object]) -> str:
    # Keys are contract names ([a-z][a-z0-9_]*): nothing to escape. Floats, the common case, inline.
    return ",".join([f"{k}={v!r}" if type(v) is float else f"{k}={_field(v)}" for k, v in fields.items()])


def record_line(measurement: str, clinic_id: str, time_ns: int, tags: Mapping[str, str],
                fields: Mapping[str, object]) -> str:
    return f"{measurement.translate(_MEASUREMENT)}{_tags(clinic_id, tags)} {_fields(fields)} {time_ns}"


def sample_line(sample: wire.Sample, clinic_id: str, time_ns: int, extra_tags: Mapping[str, str] = {}) -> str:
    return record_line(sample.m, clinic_id, time_ns, {**extra_tags, **sample.tags}, sample.f)


def telemetry_lines(message: wire.Telemetry, sent_ms: int, bound_ms: int | None = None,
                    extra_tags: Mapping[str, str] = {}, heads: dict[tuple, str] | None = None,
                    refused: list[tuple[int, str]] | None = None) -> Iterable[str]:
    """One line per storable sample. `sent_ms` (with its bound) is when the agent sent the message, on
    the collector's clock (collector.ingest.agentclock): it places the samples of an unsynchronised clock.
    `heads` caches each series' escaped `measurement,tags` across calls (a clinic sends the same few
    series every time); its owner empties it when tags change. A sample that cannot be stored
    (`unstorable`) gives no line; (its index, why) goes to `refused`."""
    prefixes: dict[tuple, str] = {} if heads is None else heads
    clinic, mono_now = message.clinic, message.mono_now
    base = zlib.crc32(message.boot.encode())
    for index, sample in enumerate(message.samples):
        key = (clinic, sample.m, tuple(sample.tags.items()))
        head = prefixes.get(key)
        why = unstorable(sample.tags, {}) if head is None else None
        why = why or unstorable({}, sample.f)
        if why is not None:
            if refused is not None:
                refused.append((index, why))
            continue
        if head is None:
            head = prefixes[key] = sample.m.translate(_MEASUREMENT) + _tags(clinic, {**extra_tags, **sample.tags})
        fields = sample.f
        if sample.sync in TRUSTED_SYNC or mono_now is None:
            when = sample.t
        else:
            when = wire.effective_time(sample, mono_now, sent_ms)
            if bound_ms is not None:  # plus the clock's drift over the sample's age
                fields = {**fields, TIME_BOUND: bound_ms + int(DRIFT * (mono_now - sample.mono))}
        yield f"{head} {_fields(fields)} {when * 1_000_000 + (base + sample.seq) % 1_000_000}"
