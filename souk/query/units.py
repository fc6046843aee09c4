"""Quantities with units in query or product text: `70%`, `500ml`, `2 kg`, `20v`, `12 oz`, `3/4 in`, `500毫升`.

`find_quantities(text)` returns one `Quantity` per match with the value, a canonical unit, its
dimension and the value in the dimension's base unit, so `0.5 l` and `500ml` compare equal
(`Quantity.key`). `Quantity.term` is a canonical token that survives souk's analyzers as one term
(`500ml`, `70pct`, `0p75in`: `.` becomes `p`, `%` becomes `pct`), for indexing units apart from bare
numbers. Spans index into the text given; pass normalized text (`souk.analysis.normalize`) so
full-width digits and case are already folded.

Misuse: treating the `70` of `70%` as a bare number in recall or spelling; skip quantity spans.
Single-letter units (`v`, `w`, `a`, `m`, `k`) count only when glued to the number (`20v`, not `20 v`),
and `in` is not a unit before a number (`2 in 1`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# canonical unit -> (dimension, factor to the dimension's base unit)
UNITS: dict[str, tuple[str, float]] = {
    "%": ("percent", 1.0),
    "ml": ("volume", 1.0), "cl": ("volume", 10.0), "l": ("volume", 1000.0), "floz": ("volume", 29.5735),
    "gal": ("volume", 3785.41), "qt": ("volume", 946.353), "pt": ("volume", 473.176),
    "mg": ("mass", 0.001), "g": ("mass", 1.0), "kg": ("mass", 1000.0), "oz": ("mass", 28.3495),
    "lb": ("mass", 453.592), "catty": ("mass", 500.0),
    "mm": ("length", 1.0), "cm": ("length", 10.0), "m": ("length", 1000.0), "in": ("length", 25.4),
    "ft": ("length", 304.8), "yd": ("length", 914.4),
    "v": ("voltage", 1.0), "w": ("power", 1.0), "kw": ("power", 1000.0), "a": ("current", 1.0),
    "mah": ("charge", 1.0), "ah": ("charge", 1000.0), "btu": ("energy_rate", 1.0), "hp": ("horsepower", 1.0),
    "psi": ("pressure", 1.0), "rpm": ("speed", 1.0), "gpm": ("flow", 1.0), "lm": ("luminous_flux", 1.0),
    "k": ("colour_temperature", 1.0), "gauge": ("gauge", 1.0), "sqft": ("area", 1.0), "cuft": ("volume_ft3", 1.0),
    "pc": ("count", 1.0), "pack": ("pack", 1.0), "roll": ("roll", 1.0), "bottle": ("bottle", 1.0),
    "can": ("can", 1.0), "box": ("box", 1.0),
}

# spelling as written (after casefold) -> canonical unit; the longest spelling wins at a position
_SPELLINGS: dict[str, str] = {
    "%": "%", "percent": "%", "pct": "%",
    "ml": "ml", "millilitre": "ml", "milliliter": "ml", "millilitres": "ml", "milliliters": "ml", "cl": "cl",
    "l": "l", "ltr": "l", "litre": "l", "liter": "l", "litres": "l", "liters": "l",
    "fl oz": "floz", "fl. oz": "floz", "fl.oz": "floz", "floz": "floz",
    "gal": "gal", "gal.": "gal", "gallon": "gal", "gallons": "gal", "qt": "qt", "quart": "qt", "quarts": "qt",
    "pt": "pt", "pint": "pt", "pints": "pt",
    "mg": "mg", "g": "g", "gm": "g", "gram": "g", "grams": "g", "kg": "kg", "kgs": "kg", "kilo": "kg", "kilos": "kg",
    "oz": "oz", "oz.": "oz", "ounce": "oz", "ounces": "oz", "lb": "lb", "lbs": "lb", "lb.": "lb", "pound": "lb",
    "pounds": "lb",
    "mm": "mm", "cm": "cm", "m": "m", "meter": "m", "metre": "m", "meters": "m", "metres": "m",
    "in": "in", "in.": "in", "inch": "in", "inches": "in", '"': "in", "''": "in",
    "ft": "ft", "ft.": "ft", "foot": "ft", "feet": "ft", "'": "ft", "yd": "yd", "yard": "yd", "yards": "yd",
    "v": "v", "volt": "v", "volts": "v", "w": "w", "watt": "w", "watts": "w", "kw": "kw", "a": "a", "amp": "a",
    "amps": "a", "mah": "mah", "ah": "ah", "btu": "btu", "btus": "btu", "hp": "hp", "psi": "psi", "rpm": "rpm",
    "gpm": "gpm", "lm": "lm", "lumen": "lm", "lumens": "lm", "k": "k", "gauge": "gauge", "ga": "gauge",
    "sq ft": "sqft", "sq. ft.": "sqft", "sq. ft": "sqft", "sqft": "sqft", "cu ft": "cuft", "cu. ft.": "cuft",
    "cu. ft": "cuft", "cuft": "cuft",
    "pc": "pc", "pcs": "pc", "piece": "pc", "pieces": "pc", "ct": "pc", "count": "pc",
    "pack": "pack", "packs": "pack", "pk": "pack", "roll": "roll", "rolls": "roll",
    # Chinese (normalized, simplified)
    "毫升": "ml", "升": "l", "公升": "l", "克": "g", "千克": "kg", "公斤": "kg", "斤": "catty", "毫克": "mg",
    "毫米": "mm", "厘米": "cm", "公分": "cm", "米": "m", "英寸": "in", "寸": "in", "伏": "v", "瓦": "w",
    "千瓦": "kw", "安": "a", "毫安": "mah", "毫安时": "mah",
    "片": "pc", "个": "pc", "件": "pc", "只": "pc", "支": "pc", "粒": "pc", "条": "pc", "块": "pc",
    "包": "pack", "袋": "pack", "卷": "roll", "瓶": "bottle", "罐": "can", "盒": "box",
}
_GLUED_ONLY = {"v", "w", "a", "m", "k"}  # single letters: a unit only right after the digits
_NUMBER = r"(?:\d+[- ]\d+/\d+|\d+/\d+|\d+(?:,\d{3})+(?:\.\d+)?|\d*\.\d+|\d+)"
_LATIN = sorted((s for s in _SPELLINGS if s.isascii()), key=len, reverse=True)
_HAN = sorted((s for s in _SPELLINGS if not s.isascii()), key=len, reverse=True)
_PATTERN = re.compile(
    rf"(?<![\w./])(?P<num>{_NUMBER})"
    rf"(?:(?P<sp>\s?)(?P<latin>{'|'.join(map(re.escape, _LATIN))})(?![a-z0-9])"
    rf"|(?P<han>{'|'.join(map(re.escape, _HAN))}))",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Quantity:
    """A number with a unit. `value` in `unit`; `base` in the dimension's base unit (ml, g, mm, ...)."""

    text: str
    start: int
    end: int
    value: float
    unit: str
    dimension: str
    base: float

    @property
    def key(self) -> tuple[str, float]:
        """(dimension, base value rounded): equal for `0.5 l` and `500 ml`."""
        return self.dimension, round(self.base, 3)

    @property
    def term(self) -> str:
        """One analyzer-safe token: `500ml`, `70pct`, `0p75in`."""
        number = f"{self.value:.3f}".rstrip("0").rstrip(".")
        return number.replace(".", "p") + ("pct" if self.unit == "%" else self.unit)


def parse_number(text: str) -> float:
    """`3/4` -> 0.75, `1-1/2` and `1 1/2` -> 1.5, `1,000` -> 1000, `.5` -> 0.5."""
    text = text.replace(",", "")
    whole, _, frac = text.replace("-", " ").rpartition(" ") if "/" in text else ("", "", text)
    if "/" in frac:
        num, den = frac.split("/")
        value = int(num) / int(den) if int(den) else 0.0
        return value + (int(whole) if whole.strip() else 0)
    return float(frac)


def find_quantities(text: str) -> list[Quantity]:
    """Every quantity with a unit in `text`, left to right, non-overlapping."""
    out = []
    for m in _PATTERN.finditer(text):
        spelled = (m.group("latin") or m.group("han")).lower()
        if m.group("latin") and spelled in _GLUED_ONLY and m.group("sp"):
            continue
        if spelled == "in" and re.match(r"\s+\d", text[m.end():]):
            continue  # "2 in 1"
        unit = _SPELLINGS[spelled]
        value = parse_number(m.group("num"))
        dimension, factor = UNITS[unit]
        out.append(Quantity(m.group(), m.start(), m.end(), value, unit, dimension, value * factor))
    return out


def quantity_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each quantity: the spans spelling and bare-number recall must leave alone."""
    return [(q.start, q.end) for q in find_quantities(text)]
