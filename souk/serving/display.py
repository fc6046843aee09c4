"""How a page or a terminal shows values of an index: which number field is the price, the unit of
each number field (a currency from the schema, or none: a CNY catalog never shows "$"), and which
keyword fields are category hierarchies (a drill-down facet).

Misuse: hard-coding a currency symbol; formatting a number field without its unit.
"""
from __future__ import annotations

from typing import Any

from souk.analysis.values import PATH_JOINER, is_currency
from souk.schema import Schema

_SUFFIX_UNITS = ("元", "円", "kr", "zł", "Fr.")


def price_field(schema: Schema) -> str | None:
    """The number field shown as a hit's price: the first with a currency unit, else one named like a price."""
    numbers = schema.of_kind("number")
    money = [f.name for f in numbers if is_currency(f.unit)]
    named = [f.name for f in numbers if "price" in f.name.lower() or "价" in (f.source or "")]
    return next(iter(money or named), None)


def display_config(schema: Schema) -> dict[str, Any]:
    """The part of `/config` the page formats values with."""
    return {"units": {f.name: f.unit for f in schema.of_kind("number") if f.unit},
            "currency_fields": [f.name for f in schema.of_kind("number") if is_currency(f.unit)],
            "hierarchies": {f.name: PATH_JOINER.strip() for f in schema.of_kind("keyword") if f.hierarchy},
            "price_field": price_field(schema)}


def format_value(value: float, unit: str | None) -> str:
    """A number as a terminal shows it: money with two decimals and its symbol or code (`¥1,299.00`,
    `1,299.50 EUR`, `630.00元`), other units after the number, no unit a plain number."""
    if unit and is_currency(unit):
        amount = f"{value:,.2f}"
        if unit.isalpha() and unit.isascii() and len(unit) == 3:
            return f"{amount} {unit}"
        return f"{amount}{unit}" if unit in _SUFFIX_UNITS else f"{unit}{amount}"
    number = f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"
    return f"{number} {unit}" if unit else number
