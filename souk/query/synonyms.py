"""Synonyms: which other words mean the same as the words of this query?

A synonym file is TOML (the shipped set is `souk/query/data/synonyms.toml`)::

    weight = 0.5                       # weight of expansions (default 0.5), 0 < weight <= 1
    [zh]                               # a language section: zh, en, ... or `any` (every language)
    rules = [
      "巧克力, 朱古力",                 # equivalent: each term expands to all the others
      "黄油 => 牛油",                   # one-way: 黄油 also finds 牛油, 牛油 does not find 黄油
      { rule = "番茄, 西红柿", weight = 0.8 },   # a rule with its own weight
    ]

or Solr-style text (`.txt`): one rule a line in the same syntax, `#` comments, and optional
`[lang]` lines that start a language section (rules before the first one belong to `any`).

Terms are normalized like index text (NFKC, case, traditional to simplified) and matched on units:
English words (Snowball stems, whole words only, so `tv` never matches inside `tvs` and `diapers`
matches `diaper`) and single Han characters (a Han term also matches inside longer words, the way the
index's search-mode tokens do: 巧克力 matches in 巧克力饼干). Multi-word terms match word sequences.
Matching is leftmost-longest without overlaps.

An expansion is an extra, optional term with a lower weight: the matched words stay as the user typed
them and expansions must never become required terms. Misuse: listing related-but-different words
(手机 and 电话, 饼干 and 曲奇) as synonyms; they pull in wrong products at every query.
Files are re-read when they change (cached by modification time), so edits apply without reindexing.
"""
from __future__ import annotations

import logging
import os
import re
import stat
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from souk.analysis.filters import stem
from souk.analysis.normalize import HAN, HAN_CLASS, normalize
from souk.errors import ConfigError
from souk.limits import (MAX_SYNONYM_EXPANSIONS, MAX_SYNONYM_FILE_BYTES, MAX_SYNONYM_RULE_TERMS,
                         MAX_SYNONYM_TERM_CHARS, describe_bytes)
from souk.plugins import parse_options
from souk.query.plan import QUERY_STEPS

if TYPE_CHECKING:
    pass

log = logging.getLogger("souk.query")

DEFAULT_WEIGHT = 0.5
SHIPPED = Path(__file__).with_name("data") / "synonyms.toml"
_UNIT = re.compile(rf"[{HAN_CLASS}]|[^\W_{HAN_CLASS}]+")
_LANGUAGE = re.compile(r"^(any|[a-z]{2,3}(-[a-z0-9]+)?)$")
_TOP_KEYS = {"weight", "version"}


@dataclass(frozen=True)
class Rule:
    """One rule: `sources` expand to `targets` (equivalent rules list every term on both sides)."""

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    equivalent: bool
    weight: float
    language: str
    text: str
    where: str  # file and position, for messages


@dataclass(frozen=True)
class Expansion:
    """An optional extra query term: `text` (normalized) for the words `matched` in the query."""

    text: str
    terms: tuple[str, ...]
    weight: float
    matched: str
    rule: str

    def to_dict(self) -> dict:
        return {"text": self.text, "terms": list(self.terms), "weight": self.weight, "matched": self.matched,
                "rule": self.rule}


def units(text: str) -> list[tuple[str, int, int]]:
    """Matching units of normalized text with spans: stemmed words and single Han characters."""
    return [(m.group() if HAN.match(m.group()) else stem(m.group()), m.start(), m.end()) for m in _UNIT.finditer(text)]


def _surface_terms(text: str) -> tuple[str, ...]:
    """Words of a normalized term: Latin words, and Han runs kept whole (`mobile phone` -> 2 terms)."""
    return tuple(re.findall(rf"[{HAN_CLASS}]+|[^\W_{HAN_CLASS}]+", text))


class Synonyms:
    """A compiled synonym set. Load with `Synonyms.load(path)` (cached by mtime) or `Synonyms.shipped()`."""

    def __init__(self, rules: Sequence[Rule], path: Path | None = None):
        self.rules = list(rules)
        self.path = path
        self._table: dict[tuple[str, ...], list[tuple[str, Rule]]] = {}
        pairs = 0
        for rule in self.rules:
            pairs += len(rule.sources) * len(rule.targets)
            if pairs > MAX_SYNONYM_EXPANSIONS:
                raise ConfigError(f"{rule.where}: the file defines over {MAX_SYNONYM_EXPANSIONS:,} expansions "
                                  "(term -> term pairs) up to this rule; split it into fewer, smaller rules")
            keys = {target: tuple(u for u, _, _ in units(target)) for target in rule.targets}
            for source in rule.sources:
                key = tuple(u for u, _, _ in units(source))
                for target in rule.targets:
                    if keys[target] != key:
                        self._table.setdefault(key, []).append((target, rule))
        self._longest = max((len(k) for k in self._table), default=0)

    # ---- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None) -> "Synonyms":
        """The synonym set in `path` (TOML or Solr-style .txt; None: the shipped set).

        Cheap to call per query: the file is parsed again only when its mtime or size changed.
        """
        path = Path(path) if path is not None else SHIPPED
        try:
            st = path.stat()
        except OSError:
            raise ConfigError(f"synonym file {path} does not exist") from None
        stamp = (st.st_mtime_ns, st.st_size)
        key = os.path.abspath(path)
        with _LOCK:
            hit = _CACHE.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
        synonyms = cls(parse_rules(path), path)
        with _LOCK:
            _CACHE[key] = (stamp, synonyms)
        return synonyms

    @classmethod
    def shipped(cls) -> "Synonyms":
        """The reviewed zh/en e-commerce set shipped with souk."""
        return cls.load(SHIPPED)

    # ---- use ---------------------------------------------------------------------------------
    def expand(self, query: str | Sequence[str], languages: Iterable[str] | None = None) -> list[Expansion]:
        """Expansions for a query string or its tokens, in query order, deduplicated by text.

        `languages` limits the rules to those sections (plus `any`); None applies every section.
        """
        text = normalize(query) if isinstance(query, str) else _join_tokens([normalize(t) for t in query])
        allowed = None if languages is None else {*languages, "any"}
        us = units(text)
        out: dict[str, Expansion] = {}
        i = 0
        while i < len(us):
            step = 1
            for length in range(min(self._longest, len(us) - i), 0, -1):
                found = self._table.get(tuple(u for u, _, _ in us[i : i + length]))
                found = [(t, r) for t, r in found or () if allowed is None or r.language in allowed]
                if not found:
                    continue
                matched = text[us[i][1] : us[i + length - 1][2]]
                for target, rule in found:
                    old = out.get(target)
                    if old is None or old.weight < rule.weight:
                        out[target] = Expansion(target, _surface_terms(target), rule.weight, matched, rule.text)
                step = length
                break
            i += step
        keys = [u for u, _, _ in us]
        return [e for e in out.values() if not _contains(keys, [u for u, _, _ in units(e.text)])]

    def pairs(self) -> set[frozenset[str]]:
        """Every pair of terms a rule relates (normalized), for telling known pairs from new ones."""
        out = set()
        for rule in self.rules:
            for a in rule.sources:
                for b in rule.targets:
                    if a != b:
                        out.add(frozenset((a, b)))
        return out

    def __len__(self) -> int:
        return len(self.rules)


_LOCK = threading.Lock()
_CACHE: dict[str, tuple[tuple[int, int], Synonyms]] = {}


def _contains(seq: list[str], sub: list[str]) -> bool:
    """True when `sub` occurs contiguously in `seq` (an expansion the query already has)."""
    n = len(sub)
    return any(seq[i : i + n] == sub for i in range(len(seq) - n + 1))


def _join_tokens(tokens: list[str]) -> str:
    """Tokens back into text: Han tokens joined directly, others with spaces."""
    out = ""
    for tok in tokens:
        if out and not (HAN.match(out[-1]) and tok[:1] and HAN.match(tok[0])):
            out += " "
        out += tok
    return out


# ---- parsing ---------------------------------------------------------------------------------
def parse_rules(path: Path) -> list[Rule]:
    """Rules of a synonym file; ConfigError names the file, section and rule of any problem."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"synonym file {path} is not a regular file")
        with path.open("rb") as fh:
            data = fh.read(MAX_SYNONYM_FILE_BYTES + 1)
        if len(data) > MAX_SYNONYM_FILE_BYTES:
            raise ConfigError(f"synonym file {path} is over {describe_bytes(MAX_SYNONYM_FILE_BYTES)}; "
                              "split it or prune it")
        raw = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read synonym file {path}: {type(e).__name__}") from None
    if path.suffix == ".toml":
        return _parse_toml(raw, path)
    return _parse_text(raw, path)


def _parse_toml(raw: str, path: Path) -> list[Rule]:
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    weight = _weight(data.get("weight", DEFAULT_WEIGHT), f"{path}: weight")
    rules = []
    for section, body in data.items():
        if section in _TOP_KEYS:
            continue
        where = f"{path}: [{section}]"
        if not _LANGUAGE.match(section):
            raise ConfigError(f"{where}: a section is a language code such as zh or en, or 'any'")
        if not isinstance(body, dict) or set(body) - {"rules"}:
            raise ConfigError(f"{where}: expected a table with one key, rules = [...]")
        items = body.get("rules", [])
        if not isinstance(items, list):
            raise ConfigError(f"{where}.rules: expected a list of rules")
        for n, item in enumerate(items, 1):
            here = f"{where} rule {n}"
            rule_weight = weight
            if isinstance(item, dict):
                if set(item) - {"rule", "weight"} or not isinstance(item.get("rule"), str):
                    raise ConfigError(f"{here}: expected {{rule = \"a, b\", weight = 0.5}}")
                rule_weight = _weight(item.get("weight", weight), f"{here}: weight")
                item = item["rule"]
            if not isinstance(item, str):
                raise ConfigError(f"{here}: expected a string such as \"a, b\" or \"a => b\"")
            rules.append(parse_rule(item, section, rule_weight, here))
    return rules


def _parse_text(raw: str, path: Path) -> list[Rule]:
    rules, section = [], "any"
    for n, line in enumerate(raw.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            if not _LANGUAGE.match(section):
                raise ConfigError(f"{path}:{n}: a section is a language code such as zh or en, or 'any'")
            continue
        rules.append(parse_rule(line, section, DEFAULT_WEIGHT, f"{path}:{n}"))
    return rules


def parse_rule(text: str, language: str = "any", weight: float = DEFAULT_WEIGHT, where: str = "rule") -> Rule:
    """One rule in Solr syntax: `a, b, c` (equivalent) or `a, b => c` (one-way)."""
    if text.count("=>") > 1:
        raise ConfigError(f"{where}: {text!r} has more than one '=>'")
    if "=>" in text:
        left, right = text.split("=>")
        sources, targets = _terms(left, where, text), _terms(right, where, text)
        if not sources or not targets:
            raise ConfigError(f"{where}: {text!r} needs terms on both sides of '=>'")
        if len(sources) + len(targets) > MAX_SYNONYM_RULE_TERMS:
            raise ConfigError(f"{where}: a rule of {len(sources) + len(targets)} terms is over the limit of "
                              f"{MAX_SYNONYM_RULE_TERMS}; split it into rules of related terms")
        return Rule(sources, targets, False, weight, language, text.strip(), where)
    terms = _terms(text, where, text)
    if len(set(terms)) < 2:
        raise ConfigError(f"{where}: {text!r} needs at least two different terms (a, b) or a one-way rule (a => b)")
    return Rule(terms, terms, True, weight, language, text.strip(), where)


def _terms(part: str, where: str, text: str) -> tuple[str, ...]:
    out = []
    raws = part.split(",")
    if len(raws) > MAX_SYNONYM_RULE_TERMS:
        raise ConfigError(f"{where}: a rule of {len(raws)} terms on one side is over the limit of "
                          f"{MAX_SYNONYM_RULE_TERMS}; split it into rules of related terms")
    for raw in raws:
        if len(raw.strip()) > MAX_SYNONYM_TERM_CHARS:
            raise ConfigError(f"{where}: a term of {len(raw.strip())} characters is over the limit of "
                              f"{MAX_SYNONYM_TERM_CHARS}")
        term = " ".join(normalize(raw).split())
        if not term or not units(term):
            raise ConfigError(f"{where}: {text!r} has an empty term")
        if len(term) == 1 and HAN.match(term):
            raise ConfigError(f"{where}: {text!r}: the single character {term!r} would match inside too many words")
        out.append(term)
    return tuple(out)


def _weight(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"{where}: must be a number in (0, 1], got {value!r}")
    return float(value)


@dataclass
class SynonymOptions:
    """`[query.synonyms]`: `file` (relative to the index directory; default the shipped set), `languages`."""

    file: str | None = None
    languages: list[str] | None = None


@QUERY_STEPS.register("synonyms")
class SynonymRewriter:
    """Query step `synonyms`: adds each expansion to `plan.expansions` (optional, lower weight) and a
    note naming the rules. Options (`[query.synonyms]`): `file` (default: the shipped set; re-read
    when it changes) and `languages` (sections to apply besides `any`; default: all)."""

    def __init__(self, searcher: Any = None, options: dict[str, Any] | None = None):
        opts = parse_options("query.synonyms", options, SynonymOptions)
        file, languages = opts.file, opts.languages
        if file is not None and searcher is not None and not Path(file).is_absolute():
            file = str(Path(searcher.path) / file)  # relative to the index directory
        self.path = Path(file) if file else SHIPPED
        if file is not None and searcher is not None:
            _check_place(self.path, Path(searcher.path))
        self.languages = languages
        self._watch = _watched(self.path)  # a broken file fails when the planner is built, not per query

    def rewrite(self, plan):
        from souk.query.plan import Expansion as PlanExpansion

        expansions = self._watch.current().expand(plan.text, self.languages)
        known = {e.text for e in plan.expansions}
        for e in expansions:
            if e.text not in known:
                plan.expansions.append(PlanExpansion(e.text, e.weight, "synonyms", e.matched))
        if expansions:
            plan.notes.append("synonyms: " + "; ".join(f"{e.matched} -> {e.text}" for e in expansions))
        return plan


def _check_place(path: Path, index_dir: Path) -> None:
    """A synonym file named by an index's config must lie inside that index directory or souk's own data
    (the config is untrusted: it must not read /proc/self/environ or another user's files)."""
    real = path.resolve()
    for root in (index_dir.resolve(), SHIPPED.parent.resolve()):
        if real == root or root in real.parents:
            return
    raise ConfigError("query.synonyms.file: the synonym file must lie inside the index directory "
                      "(give a path relative to it)")


class _Watched:
    """The last good version of one synonym file. `current()` stats the file (cheap, per query); a
    changed file is parsed again in a background thread while the last good version keeps serving,
    and a file that became invalid is logged (server side) and skipped until it changes again."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._stamp = _stamp(path)
        self._synonyms = Synonyms.load(path)  # the first load raises: nothing older to serve
        self._tried: tuple[int, int] | None = self._stamp
        self._thread: threading.Thread | None = None

    def current(self) -> Synonyms:
        try:
            stamp = _stamp(self.path)
        except ConfigError:
            stamp = None
        if stamp != self._tried:
            with self._lock:
                if stamp != self._tried and self._thread is None:
                    self._tried = stamp
                    self._thread = threading.Thread(target=self._reload, name="souk-refresh-synonyms", daemon=True)
                    self._thread.start()
        return self._synonyms

    def wait(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _reload(self) -> None:
        from souk.query.refresh import collector_paused

        try:
            with collector_paused():  # no full GC pass on a server's event loop while the rules are built
                self._synonyms = Synonyms.load(self.path)
        except ConfigError as e:
            log.warning("synonym file %s: %s; the last good version stays in use until it is fixed", self.path, e)
        except Exception:  # noqa: BLE001 - whatever goes wrong, searches keep the last good version
            log.exception("synonym file %s could not be reloaded; the last good version stays in use", self.path)
        finally:
            with self._lock:
                self._thread = None


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        raise ConfigError(f"synonym file {path} does not exist") from None
    return (st.st_mtime_ns, st.st_size)


_WATCHED: dict[str, _Watched] = {}


def _watched(path: Path) -> _Watched:
    key = os.path.abspath(path)
    with _LOCK:
        found = _WATCHED.get(key)
    if found is None:
        found = _Watched(path)
        with _LOCK:
            found = _WATCHED.setdefault(key, found)
    return found
