"""Device profiles: which sections to read and where a vendor keeps what no standard MIB has.

A profile is a YAML file (built-in ones in agent/snmp/profiles/, an operator's own
in `snmp.profile_dirs`, which override a built-in of the same name). Standard MIBs
(system, IF-MIB, HOST-RESOURCES, UPS-MIB) are read by code; a profile adds vendor
tables such as a modem's signal, as data:

    name: teltonika-rutos
    match: {sys_object_id: ["1.3.6.1.4.1.48690"]}
    sections: [system, interfaces, host, storage, cellular]
    collect:
      - section: cellular            # stored as measurement snmp_cellular
        table: 1.3.6.1.4.1.48690.2.2.1   # conceptual row; one sample per row index
        index_tag: modem
        fields:
          rssi_dbm: {column: 12, valid: [-130, -1]}
          operator: {column: 13, type: text}

A profile that fails to load names its file, the key and the fix; the agent then
refuses to start rather than silently polling the wrong OIDs.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta, field

from agent.snmp.client import Oid, Reading, parse_oid
from agent.structs import ConfigError, Section, convert
from wire import yamlio

BUILTIN_DIR = Path(__file__).with_name("profiles")
STANDARD_SECTIONS = ("system", "interfaces", "host", "storage", "ups")
NAME = r"^[a-z][a-z0-9_]{0,40}$"
OID_TEXT = r"^\.?[0-9]+(\.[0-9]+)+$"


class ProfileError(ValueError):
    pass


class FieldSpec(Section, kw_only=True):
    column: Annotated[int, Meta(ge=0)] | None = None  # column number under the table's row OID
    oid: Annotated[str, Meta(pattern=OID_TEXT)] | None = None  # a scalar's full OID (with .0)
    type: Literal["number", "integer", "text"] = "number"
    scale: Annotated[float, Meta(description="multiply the device's number by this (e.g. 0.1)")] = 1.0
    map: Annotated[dict[int, str] | None, Meta(description="enumeration: device integer -> text")] = None
    valid: Annotated[tuple[float, float] | None, Meta(description="[min, max]; outside is 'no value'")] = None

    def __post_init__(self) -> None:
        if (self.column is None) == (self.oid is None):
            raise ValueError("give exactly one of `column` (in a table) or `oid` (a scalar)")

    def value(self, reading: Reading) -> tuple[float | int | str | None, str]:
        """The field's value from a reading, or (None, why) when the device's answer is unusable."""
        raw = reading.value
        if self.map is not None:
            if isinstance(raw, int):
                return self.map.get(raw, str(raw)), ""
            return None, f"expected an enumeration integer, got {reading.kind} {raw!r}"
        if self.type == "text":
            return str(raw)[:256], ""
        if isinstance(raw, str):  # some vendors send numbers as text ("-67", "-10.5 dB")
            match = re.match(r"^\s*(-?\d+(?:\.\d+)?)", raw)
            if match is None:
                return None, f"expected a number, got {reading.kind} {raw!r}"
            number: float = float(match.group(1))
        else:
            number = float(raw)
        number *= self.scale
        if self.valid is not None and not self.valid[0] <= number <= self.valid[1]:
            return None, ""  # the device's way of saying "no value" (0, -1, 255...): not an error, not a value
        if self.type == "integer":
            return int(round(number)), ""
        return round(number, 3), ""


class Collect(Section, kw_only=True):
    section: Annotated[str, Meta(pattern=NAME, description="a name; results go to measurement snmp_<section>")]
    table: Annotated[str, Meta(pattern=OID_TEXT)] | None = None  # the table's row (Entry) OID
    index_tag: Annotated[str, Meta(pattern=NAME, description="tag naming each row")] = "index"
    label: Annotated[int | None, Meta(description="column whose text names the row instead of its index")] = None
    fields: Annotated[dict[str, FieldSpec], Meta(min_length=1, max_length=48)]

    def __post_init__(self) -> None:
        for name in self.fields:
            if not re.match(NAME, name):
                raise ValueError(f"field name {name!r}: use lower case letters, digits and _ (e.g. rssi_dbm)")
        for name, spec in self.fields.items():
            if self.table is None and spec.column is not None:
                raise ValueError(f"field {name} has `column` but the entry has no `table`: give `oid` instead")
            if self.table is not None and spec.oid is not None:
                raise ValueError(f"field {name} has `oid` inside a table: give its `column` number instead")

    def columns(self) -> dict[str, Oid]:
        assert self.table is not None
        base = parse_oid(self.table)
        wanted = {name: base + (spec.column,) for name, spec in self.fields.items() if spec.column is not None}
        if self.label is not None:
            wanted["__label"] = base + (self.label,)
        return wanted


class Match(Section, kw_only=True):
    sys_object_id: Annotated[list[str], Meta(description="sysObjectID prefixes")] = []
    sys_descr: Annotated[list[str], Meta(description="regular expressions searched in sysDescr")] = []

    def __post_init__(self) -> None:
        for pattern in self.sys_descr:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"sys_descr {pattern!r} is not a regular expression: {exc}") from None


class Profile(Section, kw_only=True):
    name: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
    description: str = ""
    match: Match = field(default_factory=Match)
    sections: list[str] = field(default_factory=lambda: list(STANDARD_SECTIONS))
    collect: list[Collect] = []
    source: str = ""  # the file it was read from (set by load_profile; not a key of the file)

    def __post_init__(self) -> None:
        known = set(STANDARD_SECTIONS) | {c.section for c in self.collect}
        for section in self.sections:
            if section not in known:
                raise ValueError(f"section {section!r} is neither standard ({', '.join(STANDARD_SECTIONS)}) "
                                 "nor defined under `collect`")

    def score(self, sys_object_id: str, sys_descr: str) -> int:
        """How well this profile matches a device: the matched sysObjectID prefix length, or 1 for
        a sysDescr match; 0 for no match."""
        best = 0
        oid = sys_object_id.strip(".")
        for prefix in self.match.sys_object_id:
            prefix = prefix.strip(".")
            if oid == prefix or oid.startswith(prefix + "."):
                best = max(best, 1 + prefix.count(".") + 1)
        if best == 0 and any(re.search(p, sys_descr) for p in self.match.sys_descr):
            best = 1
        return best


def load_profile(path: Path) -> Profile:
    document = yamlio.load_file(path, "profile", ProfileError)
    if not isinstance(document, dict):
        raise ProfileError(f"{path}: a profile is a mapping with name, match, sections, collect")
    if "source" in document:
        raise ProfileError(f"{path}: source: not a key of a profile (remove it)")
    try:
        return convert({**document, "source": str(path)}, Profile, str(path), "SNMP profile")
    except ConfigError as exc:
        raise ProfileError(str(exc)) from None


@functools.lru_cache(maxsize=8)
def load_profiles(extra_dirs: tuple[Path, ...]) -> "Profiles":
    """The profiles for a configuration, read once per process (check-config, then the agent)."""
    return Profiles(list(extra_dirs))


class Profiles:
    """Built-in profiles plus an operator's, by name; `pick` chooses one for a device."""

    def __init__(self, extra_dirs: list[Path] = ()) -> None:  # type: ignore[assignment]
        self.by_name: dict[str, Profile] = {}
        for directory in [BUILTIN_DIR, *extra_dirs]:
            if not directory.is_dir():
                continue
            for path in sorted(directory.glob("*.yaml")):
                profile = load_profile(path)
                self.by_name[profile.name] = profile
        if "generic" not in self.by_name:
            raise ProfileError(f"{BUILTIN_DIR}: the built-in `generic` profile is missing (broken install)")

    def get(self, name: str) -> Profile:
        try:
            return self.by_name[name]
        except KeyError:
            raise ProfileError(f"no SNMP profile named {name!r} (have: {', '.join(sorted(self.by_name))})") from None

    def pick(self, sys_object_id: str, sys_descr: str) -> Profile:
        scored = [(p.score(sys_object_id, sys_descr), p.name != "generic", p.name) for p in self.by_name.values()]
        best = max(scored)
        return self.by_name[best[2]] if best[0] > 0 else self.by_name["generic"]
