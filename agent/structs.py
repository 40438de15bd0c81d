"""The agent's configuration types: msgspec structs, and errors that name the file, the key and the fix.

msgspec, not pydantic: the agent lives on a router, and pydantic with the schemas it builds was about
18 MiB of the agent's 44 MiB after imports, msgspec about 3 (docs/agent.md, footprint). The checks are
the same: strict types, bounds, patterns, unknown keys refused; a struct's `__post_init__` checks what
spans several keys. msgspec reports the first problem it meets; the message says where it is, what was
expected, what was given and, where the type knows them, the values allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi
from msgspec import Struct

from wire.codec import MISSING_FIELD_RE, UNKNOWN_FIELD_RE, path_parts, split_error

T = TypeVar("T")


class ConfigError(ValueError):
    pass


class Section(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A part of the configuration: every key known, nothing changed after loading."""


class Secret:
    """A password, community or key given inline: its value kept out of reprs and logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _json_type(value: object) -> str:
    return {dict: "object", list: "array", str: "str", bool: "bool", int: "int", float: "float"}.get(
        type(value), type(value).__name__)


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Path:
        if isinstance(value, str) and value:
            return Path(value)
        raise TypeError(f"Expected a path, got `{_json_type(value)}`")
    if kind is Secret:
        if isinstance(value, str):
            return Secret(value)
        raise TypeError(f"Expected `str`, got `{_json_type(value)}`")
    raise NotImplementedError


def _enc_hook(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Secret):
        return value.get_secret_value()
    raise NotImplementedError


def convert(document: object, kind: type[T], source: str, what: str = "configuration") -> T:
    """`document` (from YAML or JSON) as `kind`, or ConfigError naming `source`, the key and the fix."""
    try:
        return msgspec.convert(document, kind, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise ConfigError(describe(exc, document, kind, source, what)) from None


def to_builtins(value: Any) -> Any:
    """A struct as plain JSON values (paths as text), as `convert` reads them back."""
    return msgspec.to_builtins(value, enc_hook=_enc_hook)


def default_of(kind: type[Struct], name: str) -> Any:
    """A key's default in a struct, or None if it has none."""
    for field in mi.type_info(kind).fields:  # type: ignore[union-attr]
        if field.name == name:
            if field.default_factory is not mi.NODEFAULT:
                return field.default_factory()
            return None if field.default is mi.NODEFAULT else field.default
    raise KeyError(name)


_MSGSPEC_WORDS = ("Expected", "Invalid", "Number", "Object", "Input", "Tuple", "Array")  # its own messages
def describe(exc: msgspec.ValidationError, document: object, kind: type, source: str, what: str) -> str:
    text, path = split_error(exc)
    parts: list[str | int] = []
    for part in path_parts(path):
        parts.append(_failing_key(kind, document, parts) if part is None else part)
    if found := MISSING_FIELD_RE.match(text):
        parts.append(found["name"])
        problem, choices = "missing", _choices(kind, document, parts)
        fix = f"add it: one of {choices}" if choices else "add it"
    elif found := UNKNOWN_FIELD_RE.match(text):
        parts.append(found["name"])
        problem, fix = "not a key here", "remove it or check its spelling"
    elif text.startswith(_MSGSPEC_WORDS):
        problem = text[0].lower() + text[1:]
        given = _lookup(document, parts)
        secret = any(word in str(parts[-1] if parts else "") for word in ("password", "key", "community", "secret"))
        if given is not None and not isinstance(given, (dict, list)) and "got" not in problem \
                and f"value {given!r}" not in problem and not secret:
            problem += f", got {given!r}"
        choices = _choices(kind, document, parts)
        fix = f"use one of: {choices}" if choices else "correct the value"
    else:  # a struct's own check (__post_init__), whose message says what to do
        problem, fix = text, ""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".") or "(top level)"
    return f"{source}: invalid {what}:\n  {source}: {where}: {problem}" + (f" ({fix})" if fix else "")


def _failing_key(kind: type, document: object, parts: list[str | int]) -> str:
    """The key of the mapping at `parts` whose value is refused (msgspec says `[...]`, not which)."""
    node, info = _lookup(document, parts), _type_at(kind, document, parts)
    if not isinstance(node, dict) or not isinstance(info, mi.DictType):
        return "?"
    value_type = _unwrap(info.value_type, None)
    if not isinstance(value_type, mi.StructType):
        return "?"
    for key, value in node.items():
        try:
            msgspec.convert(value, value_type.cls, dec_hook=_dec_hook)
        except msgspec.ValidationError:
            return str(key)
    return "?"


def _lookup(document: object, parts: list[str | int]) -> object:
    node = document
    for part in parts:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node


def _unwrap(info: Any, node: object) -> Any:
    """The type that applies to `node`: past Annotated metadata, Optional, and a tagged union's tag."""
    while True:
        if isinstance(info, mi.Metadata):
            info = info.type
        elif isinstance(info, mi.UnionType):
            others = [t for t in info.types if not isinstance(t, mi.NoneType)]
            structs = [t for t in others if isinstance(t, mi.StructType) and t.tag_field]
            if structs and isinstance(node, dict):
                chosen = [t for t in structs if t.tag == node.get(t.tag_field)]
                if not chosen:
                    return info
                info = chosen[0]
            elif len(others) == 1:
                info = others[0]
            else:
                return info
        else:
            return info


def _type_at(kind: type, document: object, parts: list[str | int]) -> Any:
    info, node = _unwrap(mi.type_info(kind), document), document
    for part in parts:
        if isinstance(part, int) and isinstance(info, (mi.ListType, mi.SetType, mi.VarTupleType)):
            info = info.item_type
        elif isinstance(part, str) and isinstance(info, mi.StructType):
            field = next((f for f in info.fields if f.encode_name == part), None)
            if field is None:
                return None
            info = field.type
        elif isinstance(part, str) and isinstance(info, mi.DictType):
            info = info.value_type
        else:
            return None
        node = _lookup(node, [part])
        info = _unwrap(info, node)
    return info


def _choices(kind: type, document: object, parts: list[str | int]) -> str:
    """The values a key allows, where its type lists them (a choice of words, a probe's kind)."""
    if not parts:
        return ""
    parent = _type_at(kind, document, parts[:-1])
    if isinstance(parent, mi.UnionType):
        tagged = [t for t in parent.types if isinstance(t, mi.StructType) and t.tag_field == parts[-1]]
        if tagged:
            return ", ".join(str(t.tag) for t in tagged)
    info = _type_at(kind, document, parts)
    if isinstance(info, mi.LiteralType):
        return ", ".join(str(v) for v in info.values)
    return ""
