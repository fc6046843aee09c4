"""Values as shop files write them: prices with currency symbols and thousands separators
(`$11.99`, `¥1,299`, `HK$1,299.50`, `1.299,50 €`) and category paths (`A > B > C`, `A >> B`, `A | B`).

`parse_number(text, decimal)` reads a number and the currency (or unit symbol) written with it.
`decimal` is the decimal mark: "." or ","; None reads either when the text is unambiguous (`1,299`
is one thousand two hundred ninety-nine, `12,50` and `1.299,50` use a decimal comma). Thousands groups
must have three digits: with `decimal="."`, `1,2` is refused rather than read as 12.
`hierarchy_levels(value, sep)` splits a category path into its levels; `hierarchy_prefixes` gives every
level's path (`A`, `A > B`, `A > B > C`) joined with `PATH_JOINER`, the form indexed and filtered on.
Misuse: `float()` on a price column (refuses `$11.99`, misreads `1.299,50`).
"""
from __future__ import annotations

import json
import math
import re
import unicodedata

DECIMALS = (".", ",")
PATH_JOINER = " > "
HIERARCHY_SEPARATORS = (">", ">>", "|", "/", ">", "›", "»")
# Currency symbols and codes as they appear before or after a number; longest first.
_SYMBOLS = ("HK$", "US$", "NT$", "C$", "A$", "S$", "R$", "NZ$", "MX$", "$", "€", "£", "¥", "₹", "₩", "₽", "₺", "₫",
            "₱", "฿", "₪", "₦", "¢", "元", "円", "Rs.", "Rs", "RMB", "kr", "zł", "Fr.")
_CODES = ("USD", "EUR", "GBP", "JPY", "CNY", "HKD", "INR", "KRW", "RUB", "TWD", "SGD", "AUD", "CAD", "CHF", "SEK",
          "NOK", "DKK", "PLN", "BRL", "MXN", "NZD", "THB", "MYR", "IDR", "PHP", "VND", "TRY", "ZAR", "AED", "SAR")
CURRENCIES = frozenset(_SYMBOLS + _CODES)
_CUR = "|".join(re.escape(s) for s in sorted(set(_SYMBOLS + _CODES), key=len, reverse=True))
_NUMBER = re.compile(
    rf"^(?P<sign>[-+])?\s*(?P<pre>{_CUR})?\s*(?P<sign2>[-+])?\s*(?P<body>\d[\d.,' ]*)\s*(?P<post>{_CUR})?$")
_PLAIN = {".": re.compile(r"^\d+(?:\.\d+)?$|^\.\d+$"), ",": re.compile(r"^\d+(?:,\d+)?$")}
_GROUPED = {".": re.compile(r"^\d{1,3}(?:[,' ]\d{3})+(?:\.\d+)?$"),
            ",": re.compile(r"^\d{1,3}(?:[.' ]\d{3})+(?:,\d+)?$")}
_SPACES = re.compile(r"[\s\u00a0\u202f\u2009]+")


def parse_number(value: str, decimal: str | None = None) -> tuple[float, str | None]:
    """The number written in `value` and its currency symbol or code (None if it has none).

    Raises ValueError naming the problem (`expected a number, got '...'`) for anything else, so a
    bad record is reported with its line instead of being indexed as junk."""
    if decimal is not None and decimal not in DECIMALS:
        raise ValueError(f"decimal mark must be '.' or ',', got {decimal!r:.10}")
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", value)).strip()
    try:  # the common case first: a plain number ("12", "-3.5e2", "inf" is refused below)
        num = float(text) if decimal != "," or "." not in text else None
    except ValueError:
        num = None
    if num is not None:
        if not math.isfinite(num):
            raise ValueError(f"expected a finite number, got {value!r:.40}")
        return num + 0.0, None
    m = _NUMBER.match(text)
    if not m or (m["pre"] and m["post"]) or (m["sign"] and m["sign2"]):
        raise ValueError(f"expected a number, got {value!r:.40}")
    body = m["body"].strip()
    for mark in (decimal,) if decimal else DECIMALS:
        num = _read(body, mark)
        if num is not None:
            break
    else:
        what = f" with decimal mark {decimal!r}" if decimal else ""
        raise ValueError(f"expected a number{what}, got {value!r:.40}")
    if (m["sign"] or m["sign2"]) == "-":
        num = -num
    return num + 0.0, m["pre"] or m["post"]


def _read(body: str, mark: str) -> float | None:
    if _PLAIN[mark].match(body) or _GROUPED[mark].match(body):
        other = "," if mark == "." else "."
        digits = body.replace(other, "").replace("'", "").replace(" ", "").replace(mark, ".")
        num = float(digits)
        return num if math.isfinite(num) else None
    return None


def decimal_of(value: str) -> str | None:
    """The decimal mark `value` can only be read with (None: either, or not a number)."""
    readable = []
    for mark in DECIMALS:
        try:
            parse_number(value, mark)
            readable.append(mark)
        except ValueError:
            pass
    return readable[0] if len(readable) == 1 else None


def is_currency(unit: str | None) -> bool:
    """Whether a field's unit names money (a symbol or an ISO code souk knows)."""
    return bool(unit) and (unit in CURRENCIES or bool(re.fullmatch(r"[A-Z]{3}", unit or "")))


def hierarchy_levels(value: str, sep: str) -> list[str]:
    """The levels of one category path (`"A >> B >> C"` -> A, B, C). A value written as a JSON list
    of paths (`["A >> B"]`, as some exports do) is read as that list's first path; empty levels are
    dropped, so `>` also splits `>>`."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            items = json.loads(text)
        except ValueError:
            items = None
        if isinstance(items, list) and items and all(isinstance(x, str) for x in items):
            text = items[0]
    return [p.strip() for p in text.split(sep) if p.strip()]


def hierarchy_paths(value: str, sep: str) -> list[str]:
    """The paths of a value as stored: the levels joined by `PATH_JOINER` (one path per JSON list item)."""
    text = value.strip()
    items = [text]
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            items = parsed
    out = []
    for item in items:
        levels = hierarchy_levels(item, sep)
        if levels:
            out.append(PATH_JOINER.join(levels))
    return out


def hierarchy_prefixes(paths: list[str]) -> list[str]:
    """Every level's path of stored paths (`A > B` gives `A` and `A > B`), each once: the indexed terms,
    so a filter on any level finds the documents below it."""
    out: dict[str, None] = {}
    for path in paths:
        levels = path.split(PATH_JOINER)
        for i in range(1, len(levels) + 1):
            out[PATH_JOINER.join(levels[:i])] = None
    return list(out)


def canonical_path(value: str, sep: str) -> str:
    """A filter value on a hierarchy field in the indexed form: `Toys>Games` and `Toys > Games` alike
    (levels may be written with the field's separator or with `>`)."""
    levels = hierarchy_levels(value, sep) if sep in value else [p.strip() for p in value.split(">") if p.strip()]
    return PATH_JOINER.join(levels)


def guess_hierarchy(values: list[str]) -> str | None:
    """The separator of a column of category paths (most values hold it between two or more
    non-empty, short levels), or None."""
    if len(values) < 3:
        return None
    for sep in (">>", ">", "|", "›", "»", "/"):
        hits = 0
        for v in values:
            levels = hierarchy_levels(v, sep) if sep in v else []
            if len(levels) >= 2 and all(len(x) <= 120 for x in levels) and not re.search(r"https?://", v):
                hits += 1
        need = 0.8 if sep == "/" else 0.6
        if hits >= need * len(values) and hits >= 3:
            return sep
    return None
