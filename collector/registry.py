"""The clinic registry: one file listing every clinic the collector accepts, YAML or CSV.

    clinics:
      - id: es-ib-0042
        name: Centro de Salud de Sóller
        region: Illes Balears
        isp: Movistar
        link: lte              # fibre | dsl | lte | satellite | other
        tz: Europe/Madrid      # for recurring maintenance windows (default UTC)
        lat: 39.766
        lon: 2.715
        contacts: [{name: Coordinación TIC, email: tic@example.org, lang: es, tz: Europe/Madrid}]
    contacts:                  # people told of incidents in a scope (collector.alerts)
      - id: ib-admins
        name: Coordinació TIC Illes Balears
        lang: ca               # en | es | ca | it | pt
        tz: Europe/Madrid
        email: tic@example.org
        phone: "+34600000000"  # SMS
        regions: [Illes Balears]   # or clinics: [...], or all: true
        escalation: false      # true: told only once an incident stays open alerts.escalate_after_s

A clinic's own contacts hear of that clinic only. Channels: `email`, `phone` (SMS), `webhook`,
`slack` (an incoming-webhook URL), `teams` (a Workflows webhook URL).

A `.csv` file (as a spreadsheet exports it: UTF-8 with or without BOM, `,` or `;` between
cells) has one clinic per row under a header naming the same fields; contacts go in
`contact_name`, `contact_email`, `contact_phone`, `contact_lang`, and further contacts in
`contact2_name`, `contact2_email`, ... Empty cells take the defaults.

    id,name,region,isp,link,lat,lon,contact_name,contact_email,contact_lang
    es-ib-0042,Centro de Salud de Sóller,Illes Balears,Movistar,lte,39.766,2.715,Coordinación TIC,tic@example.org,es
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collector.ingest.lineproto import unstorable
from wire import yamlio
from wire.schema import CLINIC_ID_PATTERN


class RegistryError(ValueError):
    pass


LANGS = ("en", "es", "ca", "it", "pt")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ]{5,19}$")


def check_zone(value: str) -> str:
    """`value` if it names an IANA time zone, else ValueError saying what is expected."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"tz {value!r} is not a time zone name such as Europe/Madrid") from None
    return value


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    email: str | None = None
    phone: str | None = Field(default=None, description="for SMS, international form: +34600000000")
    webhook: str | None = Field(default=None, pattern=r"^https?://")
    slack: str | None = Field(default=None, pattern=r"^https?://", description="a Slack incoming-webhook URL")
    teams: str | None = Field(default=None, pattern=r"^https?://", description="a Teams Workflows webhook URL")
    lang: str = "en"
    tz: str = "UTC"

    @field_validator("lang")
    @classmethod
    def _lang(cls, value: str) -> str:
        if value not in LANGS:
            raise ValueError(f"lang {value!r} is not one of {', '.join(LANGS)}")
        return value

    @field_validator("tz")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError(f"email {value!r} is not an address such as tic@example.org")
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is not None and not _PHONE.match(value):
            raise ValueError(f"phone {value!r} is not a number such as +34600000000")
        return value.replace(" ", "") if value is not None else None

    def channels(self) -> list[tuple[str, str]]:
        """(channel, address) for each way this contact can be reached."""
        return [(channel, address) for channel, address in (
            ("email", self.email), ("sms", self.phone), ("webhook", self.webhook), ("slack", self.slack),
            ("teams", self.teams)) if address]


class ScopedContact(Contact):
    """A contact of the whole registry, told of the incidents of some clinics, regions, or all."""
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    clinics: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)
    all: bool = False
    escalation: bool = False

    @model_validator(mode="after")
    def _some_scope(self) -> "ScopedContact":
        if not (self.clinics or self.regions or self.all):
            raise ValueError(f"contact {self.id!r} has no scope: give clinics, regions or all: true")
        return self


class Clinic(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=CLINIC_ID_PATTERN)
    name: str
    region: str = ""
    isp: str = ""
    link: Literal["fibre", "dsl", "lte", "satellite", "other"] = "other"
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    contacts: list[Contact] = Field(default_factory=list)
    tz: str = Field(default="UTC", description="the clinic's time zone, for recurring maintenance windows")

    @field_validator("tz")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("region", "isp")
    @classmethod
    def _storable_tag(cls, value: str) -> str:
        # Region and ISP become tags of every point of the clinic: a value line protocol cannot
        # carry would make every one of them unstorable.
        why = unstorable({"value": value}, {})
        if why is not None:
            raise ValueError(why.removeprefix("tags.value: ") + "; remove it from the name")
        return value


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    clinics: list[Clinic]
    contacts: list[ScopedContact] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> "Registry":
        seen: set[str] = set()
        for clinic in self.clinics:
            if clinic.id in seen:
                raise ValueError(f"clinic id {clinic.id!r} is listed twice")
            seen.add(clinic.id)
        ids: set[str] = set()
        for contact in self.contacts:
            if contact.id in ids:
                raise ValueError(f"contact id {contact.id!r} is listed twice")
            ids.add(contact.id)
            unknown = [c for c in contact.clinics if c not in seen]
            if unknown:
                raise ValueError(f"contact {contact.id!r} names clinics not in the registry: {', '.join(unknown)}")
        return self

    def by_id(self) -> dict[str, Clinic]:
        return {c.id: c for c in self.clinics}


def load_registry(path: Path) -> Registry:
    if path.suffix.lower() == ".csv":
        document, rows = _read_csv(path)
        contacts_path = path.with_name(path.stem + ".contacts.csv")
        if contacts_path.exists():
            document["contacts"] = _read_contacts_csv(contacts_path)
    else:
        document, rows = yamlio.load_file(path, "clinic registry", RegistryError), None
    try:
        return Registry.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = list(first["loc"])
        if rows is not None and len(loc) >= 2 and loc[0] == "clinics" and isinstance(loc[1], int):
            # Name the spreadsheet's line and column, not the list index.
            line, contact_numbers = rows[loc[1]]
            column = _column_of(loc[2:], contact_numbers)
            where = f"line {line}" + (f", column {column!r}" if column else "")
        else:
            where = ".".join(str(p) for p in loc)
        message = first["msg"].removeprefix("Value error, ")
        where = f"{where}: " if where else ""
        raise RegistryError(f"{path}: {where}{message} ({exc.error_count()} problem(s))") from None


_CLINIC_COLUMNS = {"id", "name", "region", "isp", "link", "lat", "lon", "tz"}
_CONTACT_COLUMN = re.compile(r"^contact(\d*)_(name|email|phone|lang|tz|webhook|slack|teams)$")


def _spreadsheet(path: Path, what: str) -> tuple[csv.DictReader, list[str]]:
    """A CSV file as a spreadsheet exports it (UTF-8 with or without BOM, `,` or `;`) and its columns."""
    text = yamlio.read_text(path, what, RegistryError, encoding="utf-8-sig", fix="export the spreadsheet as 'CSV UTF-8'")
    header_line = text.split("\n", 1)[0]
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    return reader, [c.strip() for c in reader.fieldnames or []]


def _read_csv(path: Path) -> tuple[dict, list[tuple[int, list[int]]]]:
    """The registry document from a CSV file, and for each clinic its line in the file and the
    numbers of the contact columns it filled (for error messages)."""
    reader, columns = _spreadsheet(path, "clinic registry")
    unknown = [c for c in columns if c not in _CLINIC_COLUMNS and not _CONTACT_COLUMN.match(c)]
    if not columns or "id" not in columns or "name" not in columns or unknown:
        problem = f"unknown column(s) {unknown}" if unknown else "the header must name at least 'id' and 'name'"
        raise RegistryError(f"{path}: line 1: {problem}; columns are {sorted(_CLINIC_COLUMNS)} and "
                            f"contact_name/_email/_phone/_lang/_tz/_webhook/_slack/_teams (contact2_..., "
                            f"contact3_... for more contacts)")
    clinics, lines, first_line = [], [], {}
    for row in reader:
        cells = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if None in row:
            raise RegistryError(f"{path}: line {reader.line_num}: more cells than the header has columns")
        if not any(cells.values()):
            continue  # a blank row
        clinic: dict = {k: v for k, v in cells.items() if k in _CLINIC_COLUMNS and v != ""}
        for k in ("lat", "lon"):  # spreadsheets in Spanish, Catalan or Italian write 39,766
            if k in clinic and "," in clinic[k] and "." not in clinic[k]:
                clinic[k] = clinic[k].replace(",", ".")
        contacts: dict[int, dict] = {}
        for column, value in cells.items():
            match = _CONTACT_COLUMN.match(column)
            if match and value != "":
                contacts.setdefault(int(match[1] or 1), {})[match[2]] = value
        clinic["contacts"] = [contacts[n] for n in sorted(contacts)]
        if "id" in clinic:  # a row without one is reported by the model ("id: Field required")
            if clinic["id"] in first_line:
                raise RegistryError(f"{path}: line {reader.line_num}: clinic id {clinic['id']!r} is listed twice "
                                    f"(first on line {first_line[clinic['id']]})")
            first_line[clinic["id"]] = reader.line_num
        clinics.append(clinic)
        lines.append((reader.line_num, sorted(contacts)))
    return {"clinics": clinics}, lines


_SCOPED_COLUMNS = ("id", "name", "lang", "tz", "email", "phone", "webhook", "slack", "teams", "clinics", "regions",
                   "all", "escalation")


def _read_contacts_csv(path: Path) -> list[dict]:
    """Scoped contacts beside a CSV registry (`clinics.contacts.csv` for `clinics.csv`), a row each;
    `clinics` and `regions` list several values separated by `|`; `all` and `escalation` are yes/no."""
    reader, columns = _spreadsheet(path, "contacts")
    unknown = [c for c in columns if c not in _SCOPED_COLUMNS]
    if unknown or "id" not in columns or "name" not in columns:
        raise RegistryError(f"{path}: line 1: " + (f"unknown column(s) {unknown}" if unknown else
                            "the header must name at least 'id' and 'name'") + f"; columns are {list(_SCOPED_COLUMNS)}")
    out = []
    for row in reader:
        cells = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(cells.values()):
            continue
        contact: dict = {k: v for k, v in cells.items() if v != ""}
        for key in ("clinics", "regions"):
            if key in contact:
                contact[key] = [v.strip() for v in contact[key].split("|") if v.strip()]
        for key in ("all", "escalation"):
            if key in contact:
                value = contact[key].lower()
                if value not in ("yes", "no", "true", "false", "1", "0", "sí", "si", "sì", "sim", "não", "nao"):
                    raise RegistryError(f"{path}: line {reader.line_num}, column {key!r}: {contact[key]!r} is not "
                                        f"yes or no")
                contact[key] = value in ("yes", "true", "1", "sí", "si", "sì", "sim")
        out.append(contact)
    return out


def _column_of(loc: list, contact_numbers: list[int]) -> str:
    """The CSV column for a location inside one clinic: ['lat'] -> 'lat', ['contacts', 0, 'email']
    -> 'contact_email' or 'contact2_email', whichever numbered group that contact came from."""
    if not loc:
        return ""
    if loc[0] == "contacts" and len(loc) >= 3:
        n = contact_numbers[int(loc[1])]
        return f"contact{'' if n == 1 else n}_{loc[2]}"
    return str(loc[0])
