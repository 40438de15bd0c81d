"""The clinic registry: one YAML file listing every clinic the collector accepts.

    clinics:
      - id: es-ib-0042
        name: Centro de Salud de Sóller
        region: Illes Balears
        isp: Movistar
        link: lte              # fibre | dsl | lte | satellite | other
        lat: 39.766
        lon: 2.715
        contacts: [{name: Coordinación TIC, email: tic@example.org, lang: es}]
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wire import yamlio
from wire.schema import CLINIC_ID_PATTERN


class RegistryError(ValueError):
    pass


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    email: str | None = None
    phone: str | None = None
    lang: str = "en"


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


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    clinics: list[Clinic]

    @model_validator(mode="after")
    def _unique(self) -> "Registry":
        seen: set[str] = set()
        for clinic in self.clinics:
            if clinic.id in seen:
                raise ValueError(f"clinic id {clinic.id!r} is listed twice")
            seen.add(clinic.id)
        return self

    def by_id(self) -> dict[str, Clinic]:
        return {c.id: c for c in self.clinics}


def load_registry(path: Path) -> Registry:
    document = yamlio.load_file(path, "clinic registry", RegistryError)
    try:
        return Registry.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RegistryError(f"{path}: {where}: {first['msg']} ({exc.error_count()} problem(s))") from None
