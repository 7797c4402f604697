"""The OData ``$filter`` subset the Retail Prices API accepts, compiled to a predicate over price rows.

Clauses are joined by ``and`` (optionally parenthesised), each ``field eq|ne 'value'`` or
``contains|startswith|endswith(field, 'value')``, on the text fields a price item has
(``armRegionName``, ``armSkuName``, ``productName``, ``priceType``...). Anything else raises
:class:`FilterError`, which the service answers with a 400 naming the clause.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from spotlake.testing.azure.prices import PriceRow

__all__ = ["FilterError", "compile_filter", "series_label"]


class FilterError(ValueError):
    """A ``$filter`` the emulator cannot parse; answered with HTTP 400 naming the clause."""


def series_label(family: str) -> str:
    """The series of ``family`` as product names spell it: standardDSv3Family -> DSv3 (the real
    productName says "Virtual Machines DSv3 Series")."""
    label = family.removeprefix("standard").removeprefix("basic").removesuffix("Family")
    return label or family


_CLAUSE = re.compile(
    r"^\s*(?:(?P<field>[A-Za-z]+)\s+(?P<op>eq|ne)\s+'(?P<value>(?:[^']|'')*)'"
    r"|(?P<fn>contains|startswith|endswith)\(\s*(?P<ffield>[A-Za-z]+)\s*,\s*'(?P<fvalue>(?:[^']|'')*)'\s*\))\s*$"
)


def _split_and(text: str) -> list[str]:
    # Split on " and " outside quotes.
    parts, depth_quote, start, i = [], False, 0, 0
    lower = text.lower()
    while i < len(text):
        if text[i] == "'":
            depth_quote = not depth_quote
        elif not depth_quote and lower.startswith(" and ", i):
            parts.append(text[start:i])
            start = i + 5
            i += 4
        i += 1
    parts.append(text[start:])
    out = []
    for part in (p.strip() for p in parts):
        out.append(part[1:-1].strip() if part.startswith("(") and part.endswith(")") else part)
    return out


def _field_getter(name: str) -> Callable[[PriceRow], str]:
    table = _FIELD_GETTERS.get(name)
    if table is None:
        raise FilterError(f"Invalid OData filter: unknown field '{name}'")
    return table


def _sku_label(r: PriceRow) -> str:
    sku = r.size.removeprefix("Standard_").removeprefix("Basic_").replace("_", " ")
    suffix = {
        "spot": " Spot",
        "winspot": " Spot",
        "devtestspot": " Spot",
        "lowpri": " Low Priority",
        "winlowpri": " Low Priority",
        "expired": " Expired",
    }.get(r.kind, "")
    return sku + suffix


def _product(r: PriceRow) -> str:
    windows = r.kind in ("windows", "winspot", "winlowpri", "devtest", "devtestspot")
    return f"Virtual Machines {series_label(r.family)} Series" + (" Windows" if windows else "")


def _type(r: PriceRow) -> str:
    return "DevTestConsumption" if r.kind.startswith("devtest") else "Consumption"


_FIELD_GETTERS: Final[Mapping[str, Callable[[PriceRow], str]]] = {
    "armRegionName": lambda r: r.region,
    "location": lambda r: r.location,
    "armSkuName": lambda r: r.size,
    "serviceName": lambda r: "Virtual Machines",
    "serviceFamily": lambda r: "Compute",
    "serviceId": lambda r: "DZH318Z0BQPS",
    "productName": _product,
    "skuName": _sku_label,
    "meterName": _sku_label,
    "type": _type,
    "unitOfMeasure": lambda r: "1 Hour",
}


_STRING_FUNCTIONS: Final[Mapping[str, Callable[[str, str], bool]]] = {
    "contains": str.__contains__,
    "startswith": str.startswith,
    "endswith": str.endswith,
}


def _price_type(value: str) -> Callable[[PriceRow], bool]:
    def pred(r: PriceRow) -> bool:
        t = _type(r)
        return t == value or (value == "Consumption" and t == "DevTestConsumption")

    return pred


def _equals(get: Callable[[PriceRow], str], value: str) -> Callable[[PriceRow], bool]:
    return lambda r: get(r) == value


def _negate(pred: Callable[[PriceRow], bool]) -> Callable[[PriceRow], bool]:
    return lambda r: not pred(r)


def _string_function(
    fn: Callable[[str, str], bool], get: Callable[[PriceRow], str], value: str
) -> Callable[[PriceRow], bool]:
    return lambda r: bool(fn(get(r), value))


def compile_filter(text: str) -> Callable[[PriceRow], bool]:
    """A predicate for the OData subset the real API accepts: clauses joined by ``and``, each
    ``field eq|ne 'value'`` or ``contains|startswith|endswith(field, 'value')``.

    ``priceType eq 'Consumption'`` matches ``type`` Consumption *and* DevTestConsumption (as the
    live API does: DevTest rows come through that filter, so collectors must drop them).
    """
    if not text.strip():
        return lambda _r: True
    preds: list[Callable[[PriceRow], bool]] = []
    for clause in _split_and(text):
        m = _CLAUSE.match(clause)
        if m is None:
            raise FilterError(f"Invalid OData filter clause: {clause!r}")
        if m["field"]:
            field, value = m["field"], m["value"].replace("''", "'")
            pred = _price_type(value) if field == "priceType" else _equals(_field_getter(field), value)
            preds.append(pred if m["op"] == "eq" else _negate(pred))
        else:
            get = _field_getter(m["ffield"])
            preds.append(_string_function(_STRING_FUNCTIONS[m["fn"]], get, m["fvalue"].replace("''", "'")))
    return lambda r: all(p(r) for p in preds)
