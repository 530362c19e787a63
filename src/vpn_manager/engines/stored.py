"""Typed views of what the database keeps for each server as JSON: its `settings` (public), its
`secret` (private keys) and each user's credential on it. Every engine declares its models
(engines/*/settings.py) on the base classes here and reads typed fields, never string keys.

A model is parsed from the stored dict in one place (`of_dict`, or an engine's `of(spec)`) and
written back by `to_dict` with the keys it does not know (an older or newer version's) kept as
they were, and a field the stored dict left out (an optional one, at its default) still left
out: what the database holds round-trips unchanged. Control ports (TCP ports of an engine's
control APIs) are declared by the model, so whoever must move them (the Docker runtime's ssh
tunnel) needs no naming convention to find them."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from vpn_manager.errors import StorageError

_ABSENT = object()


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of a model as parsed: its name, type and default (_ABSENT: required), and the
    exact types a stored value may have to be taken as it is (the common case, checked first:
    a server's users are parsed one by one when its config is rendered)."""

    name: str
    kind: Any
    default: Any
    exact: tuple[type, ...]


@dataclasses.dataclass(frozen=True)
class Stored:
    """Base of the typed models. `extra`: the stored keys this model does not know, kept for the
    round trip; `given`: the field names the stored dict had (None: a new model)."""

    # What `with_control_ports` moves and `control_ports` lists: names of int fields.
    CONTROL_PORTS: ClassVar[tuple[str, ...]] = ()
    # What the model is, in a message about a stored value that does not fit it.
    WHAT: ClassVar[str] = "settings"

    extra: Mapping[str, Any] = dataclasses.field(
        default_factory=dict, kw_only=True, repr=False, compare=False
    )
    given: frozenset[str] | None = dataclasses.field(
        default=None, kw_only=True, repr=False, compare=False
    )

    @classmethod
    def of_dict(cls, data: Mapping[str, Any], server: str = "") -> Self:
        """The model of a stored dict; StorageError naming the server and the key when a
        required key is missing or a value has the wrong type."""
        values: dict[str, Any] = {}
        for spec in _fields(cls):
            value = data.get(spec.name, _ABSENT)
            if value is _ABSENT:
                if spec.default is _ABSENT:
                    raise StorageError(
                        f"The stored {cls.WHAT}{_of(server)} lack {spec.name!r}.",
                        hint="The database was changed by hand or by another tool; "
                        "install the server again.",
                    )
            elif type(value) in spec.exact:
                values[spec.name] = value
            else:
                values[spec.name] = _parse(spec.kind, value, spec.name, cls, server)
        extra = {}
        if len(values) < len(data):
            extra = {key: value for key, value in data.items() if key not in values}
        # What __init__ would do, without its per-field object.__setattr__ (three times the
        # cost, for each of 10,000 users of a rendered config): the fields are checked above
        # and their defaults are immutable (_read_fields).
        model = object.__new__(cls)
        model.__dict__.update(_defaults(cls), **values, extra=extra, given=frozenset(values))
        return model

    def to_dict(self) -> dict[str, Any]:
        """The stored form, with the keys this model does not know. Of a parsed model: every
        field the stored dict had or that changed since. Of a new one: every field but those
        left at a default of None (a protocol without them)."""
        out = dict(self.extra)
        for spec in _fields(type(self)):
            value = getattr(self, spec.name)
            if self.given is None:
                keep = value is not None or spec.default is not None
            else:
                keep = spec.name in self.given or value != spec.default
            if keep:
                out[spec.name] = _dump(value)
        return out

    @classmethod
    def control_ports_in(cls, data: Mapping[str, Any]) -> list[int]:
        """The control ports a stored dict declares, read without the rest of it (which an
        older or damaged row may lack)."""
        found = (
            _parse(_kind(cls, name), data[name], name, cls, "")
            for name in cls.CONTROL_PORTS
            if data.get(name) is not None
        )
        return [port for port in found if port is not None]

    def control_ports(self) -> list[int]:
        """The control ports this server has (a protocol without one leaves it None)."""
        found = (getattr(self, name) for name in self.CONTROL_PORTS)
        return [port for port in found if port is not None]

    def with_control_ports(self, moved: Mapping[int, int]) -> Self:
        """A copy with each control port found in `moved` replaced by where it moved."""
        changes = {
            name: moved.get(port, port)
            for name in self.CONTROL_PORTS
            if (port := getattr(self, name)) is not None
        }
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True, repr=False)
class Secret(Stored):
    """A model holding keys: never shown in a repr (logs, tracebacks)."""

    WHAT: ClassVar[str] = "secrets"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(…)"


_FIELDS: dict[type[Stored], tuple[Field, ...]] = {}
_DEFAULTS: dict[type[Stored], dict[str, Any]] = {}


def _fields(cls: type[Stored]) -> tuple[Field, ...]:
    """The model's fields, read once per model from its annotations."""
    if cls not in _FIELDS:
        _FIELDS[cls] = _read_fields(cls)
    return _FIELDS[cls]


def _defaults(cls: type[Stored]) -> dict[str, Any]:
    """The model's fields that have a default, with it."""
    if cls not in _DEFAULTS:
        _DEFAULTS[cls] = {f.name: f.default for f in _fields(cls) if f.default is not _ABSENT}
    return _DEFAULTS[cls]


def _read_fields(cls: type[Stored]) -> tuple[Field, ...]:
    hints = typing.get_type_hints(cls)
    found = []
    for item in dataclasses.fields(cls):
        if item.name in ("extra", "given"):
            continue
        # A default is shared by every model parsed (of_dict): only immutable ones.
        assert item.default_factory is dataclasses.MISSING, f"{cls.__name__}.{item.name}"
        assert isinstance(item.default, str | int | bool | tuple | type(None)) or (
            item.default is dataclasses.MISSING
        ), f"{cls.__name__}.{item.name}"
        kind = hints[item.name]
        if typing.get_origin(kind) in (types.UnionType, typing.Union):
            exact = typing.get_args(kind)
        else:
            exact = (kind,)
        simple = tuple(t for t in exact if t in (str, int, bool, type(None)))
        default: Any = _ABSENT if item.default is dataclasses.MISSING else item.default
        found.append(Field(item.name, kind, default, simple))
    return tuple(found)


def _kind(cls: type[Stored], name: str) -> Any:
    return next(spec.kind for spec in _fields(cls) if spec.name == name)


def _of(server: str) -> str:
    return f" of server {server!r}" if server else ""


def _parse(kind: Any, value: Any, name: str, model: type[Stored], server: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        (kind,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        origin = typing.get_origin(kind)
    if origin is tuple and isinstance(value, list | tuple):
        (item,) = typing.get_args(kind)[:1]
        return tuple(_parse(item, v, name, model, server) for v in value)
    if isinstance(kind, type) and issubclass(kind, Stored) and isinstance(value, Mapping):
        return kind.of_dict(value, server)
    if kind is int and isinstance(value, str) and value.isdigit():
        return int(value)  # a port kept as text by a hand edit
    bool_as_int = kind is int and isinstance(value, bool)  # JSON true is not a port
    if isinstance(kind, type) and isinstance(value, kind) and not bool_as_int:
        return value
    raise StorageError(
        # The value is not shown: it may be a key.
        f"The stored {model.WHAT}{_of(server)} have {name!r} of type {type(value).__name__}; "
        f"it must be {getattr(kind, '__name__', kind)}.",
        hint="The database was changed by hand or by another tool; install the server again.",
    )


def _dump(value: Any) -> Any:
    if isinstance(value, Stored):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_dump(v) for v in value]
    return value
