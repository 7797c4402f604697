"""One serialisation mechanism for everything spotlake stores or prints: a cattrs converter.

Reports, state documents and shard parts are attrs classes. :func:`dump` turns one into JSON-ready
builtins and :func:`load` builds it back, raising :class:`~spotlake.errors.CorruptStoreError` that
names where the data came from when it does not fit. The conventions, in one place:

* ``datetime`` is an ISO 8601 string in UTC (a naive time is refused on load), ``date`` an ISO
  date, ``timedelta`` a number of seconds;
* enums are their values; tuples, sets and frozensets are lists (sets sorted, so equal values
  serialise identically);
* :class:`~spotlake.model.Secret` is never serialised: dumping one is a ``TypeError``.

A *versioned document* is a class with a ``DOC_FORMAT`` class variable. :func:`dump_doc` adds it
as ``"format"`` and :func:`load_doc` refuses any other format with a message saying what to do,
so an old spotlake never misreads a newer store (and the other way round). Classes whose stored
shape differs from their attributes (a compact plan, a quota ledger with internal queues) register
hooks on :data:`converter` in their own module.
"""

from __future__ import annotations

import enum
import typing
from collections import abc
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, Final, Protocol, TypeVar

import cattrs
from cattrs.preconf.json import make_converter

from spotlake.clock import ensure_utc
from spotlake.errors import ConfigError, CorruptStoreError
from spotlake.model import Secret

__all__ = ["Document", "converter", "dump", "dump_doc", "load", "load_doc"]

T = TypeVar("T")

#: The converter every module registers its hooks on.
converter = make_converter()


def _load_datetime(value: object, _type: object) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        raise ValueError(f"expected an ISO 8601 time, got {value!r}")
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} has no time zone (spotlake stores UTC times)")
    return ensure_utc(parsed)


def _load_timedelta(value: object, _type: object) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number of seconds, got {value!r}")
    return timedelta(seconds=value)


def _refuse_secret(_value: Secret) -> Any:
    raise TypeError("a Secret is never serialised (keep secrets out of reports and stored documents)")


def _sorted_list(value: Any) -> list[Any]:
    items = [converter.unstructure(v) for v in value]
    try:
        return sorted(items)
    except TypeError:  # mixed types: keep a deterministic order anyway
        return sorted(items, key=repr)


converter.register_unstructure_hook(datetime, lambda v: ensure_utc(v).isoformat())
converter.register_structure_hook(datetime, _load_datetime)
converter.register_unstructure_hook(date, lambda v: v.isoformat())
converter.register_structure_hook(date, lambda v, _t: date.fromisoformat(str(v)))
converter.register_unstructure_hook(timedelta, lambda v: v.total_seconds())
converter.register_structure_hook(timedelta, _load_timedelta)
converter.register_unstructure_hook(Secret, _refuse_secret)
_SETS: Final[tuple[object, ...]] = (frozenset, set, abc.Set)
# Sets sorted, whether the type is bare (``frozenset``) or parametrised (``frozenset[tuple[str, str]]``,
# which cattrs would otherwise write in hash order, different with every PYTHONHASHSEED).
converter.register_unstructure_hook_func(
    lambda t: t in (frozenset, set) or typing.get_origin(t) in _SETS, _sorted_list
)
converter.register_unstructure_hook_func(
    lambda t: isinstance(t, type) and issubclass(t, enum.Enum), lambda v: v.value
)


class Document(Protocol):
    """A class stored as a versioned document."""

    DOC_FORMAT: ClassVar[int]


def dump(value: object) -> Any:
    """``value`` as JSON-ready builtins (dicts, lists, strings, numbers, booleans, ``None``)."""
    return _lists(converter.unstructure(value))


def _lists(value: Any) -> Any:
    # cattrs keeps tuples as tuples; JSON has lists, and a dumped value should equal its JSON text's.
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lists(v) for v in value]
    return value


def load(data: object, cls: type[T], *, where: str, hint: str = "") -> T:
    """Build a ``cls`` from ``data``; :class:`CorruptStoreError` naming ``where`` if it does not fit."""
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, ConfigError, ValueError, TypeError, KeyError) as exc:
        raise CorruptStoreError(
            f"{where} is not a valid {cls.__name__}: {_describe(exc)}{_hint(hint)}"
        ) from exc


def dump_doc(value: Document) -> dict[str, Any]:
    """A versioned document: :func:`dump` plus ``"format"``."""
    body = dump(value)
    if not isinstance(body, dict):
        raise TypeError(f"{type(value).__name__} does not serialise to an object")
    return {"format": type(value).DOC_FORMAT, **body}


def load_doc(data: Mapping[str, Any], cls: type[T], *, where: str, hint: str = "") -> T:
    """Read a document :func:`dump_doc` wrote; another ``format`` is refused with ``hint``."""
    expected = getattr(cls, "DOC_FORMAT", None)
    if not isinstance(data, Mapping):
        raise CorruptStoreError(f"{where} holds a JSON {type(data).__name__}, not an object{_hint(hint)}")
    found = data.get("format")
    if found != expected:
        raise CorruptStoreError(
            f"{where} has format {found!r}; this spotlake reads {cls.__name__} format {expected}{_hint(hint)}"
        )
    return load({k: v for k, v in data.items() if k != "format"}, cls, where=where, hint=hint)


def _hint(hint: str) -> str:
    return f"; {hint}" if hint else ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        messages = cattrs.transform_error(exc)
        shown = "; ".join(messages[:3])
        return shown + (f" (and {len(messages) - 3} more)" if len(messages) > 3 else "")
    return f"{type(exc).__name__}: {exc}"
