"""Plug-ins: one registry type for every kind of thing souk looks up by name, and one options parser.

Every kind of plug-in (retrievers, ranking stages, fitters, vector backends, encoders, query steps,
feature groups, metrics, models...) is a `Registry[T]`:

    RETRIEVERS: Registry[RetrieverFactory] = Registry("retriever", builtins=("souk.retrieval.bm25", ...))

    @RETRIEVERS.register("bm25")
    def bm25(searcher, options): ...

    RETRIEVERS.get("bm25")        # ConfigError "unknown retriever 'x'; known: bm25, dense, ..."
    with RETRIEVERS.override("fake", Fake):   # tests: registered for the block only, then gone
        ...

Built-ins are named as modules and imported on first use (so a registry in a low layer never imports
the layers above it when it is itself imported, and there are no import circles); third-party packages
add plug-ins by installing an entry point in the group `souk.<kind>` (e.g. `souk.retriever`) whose value
is a module that registers on import, or an object registered under the entry point's name.

Options: a plug-in declares its options as a dataclass (typed fields with defaults) and reads them with
`parse_options(where, raw, Options)`: unknown keys, wrong types and failed checks all raise `ConfigError`
in one style, `where.key: expected ..., got ...`.

Misuse to avoid: registering a name twice to "replace" a plug-in (it raises; use `override` in tests,
`replace=True` deliberately elsewhere); keeping a module-level dict of plug-ins beside a registry.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import threading
import types
import typing
import warnings
from contextlib import contextmanager
from numbers import Real
from typing import Any, Callable, Generic, Iterator, TypeVar, overload

from souk.errors import ConfigError

T = TypeVar("T")
OptionsT = TypeVar("OptionsT")


class Registry(Generic[T]):
    """Named plug-ins of one kind, with built-ins imported lazily and entry points under `souk.<kind>`.

    Misuse: calling `get` at import time of a built-in module (the built-ins are still loading)."""

    def __init__(self, kind: str, builtins: tuple[str, ...] = (), plural: str | None = None,
                 optional: dict[str, str] | None = None) -> None:
        self.kind = kind  # entry point group `souk.<kind>`; messages read it with spaces ("query_step": "query step")
        self.label = kind.replace("_", " ")
        self.plural = plural or self.label + "s"
        self._builtins = builtins
        self._optional = dict(optional or {})  # name -> module that registers it (imported only when named)
        self._items: dict[str, T] = {}
        self._loaded = False     # built-ins imported
        self._installed = False  # entry points read (only when a name is not a built-in, or for a listing)
        self._lock = threading.RLock()

    # ---- registration --------------------------------------------------------------------------
    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, item: T, *, replace: bool = False) -> T: ...

    def register(self, name: str, item: Any = None, *, replace: bool = False) -> Any:
        """Register `item` under `name` (or use as a decorator); a name taken twice raises ConfigError."""
        if item is None:
            def deco(obj: T) -> T:
                self._put(name, obj, replace)
                return obj

            return deco
        self._put(name, item, replace)
        return item

    def _put(self, name: str, item: T, replace: bool) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a {self.label} needs a non-empty name, got {name!r}")
        with self._lock:
            if name in self._items and not replace and self._items[name] is not item:
                raise ConfigError(f"{self.label} {name!r} is registered twice; pick another name")
            self._items[name] = item

    def unregister(self, name: str) -> None:
        """Remove `name` (no error when absent)."""
        with self._lock:
            self._items.pop(name, None)

    @contextmanager
    def override(self, name: str, item: T) -> Iterator[T]:
        """Register `item` as `name` for the `with` block only (replacing a built-in of that name), then
        restore what was there: the way tests plug in fakes without leaking them into other tests."""
        self._load()
        with self._lock:
            had = name in self._items
            old = self._items.get(name)
            self._items[name] = item
        try:
            yield item
        finally:
            with self._lock:
                if had:
                    self._items[name] = old  # type: ignore[assignment]
                else:
                    self._items.pop(name, None)

    # ---- lookup --------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The plug-in registered as `name`; ConfigError names the known ones."""
        self._load()
        if name not in self._items and isinstance(name, str):
            if name in self._optional:
                importlib.import_module(self._optional[name])
            else:
                self._load_installed()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            known = ", ".join(self.names())
            raise ConfigError(f"unknown {self.label} {name!r}; known {self.plural}: {known}") from None

    def __contains__(self, name: object) -> bool:
        self._load()
        if name in self._items or name in self._optional:
            return True
        self._load_installed()
        return name in self._items

    def names(self) -> list[str]:
        """Every registered name (optional ones included, not loaded), sorted."""
        self._load()
        self._load_installed()
        return sorted({*self._items, *self._optional})

    def items(self) -> list[tuple[str, T]]:
        """The loaded plug-ins as (name, item), sorted by name."""
        self._load()
        self._load_installed()
        return sorted(self._items.items(), key=lambda kv: kv[0])

    def in_order(self) -> list[tuple[str, T]]:
        """The loaded plug-ins as (name, item) in registration order (for kinds whose order means something,
        e.g. the columns of ranking features)."""
        self._load()
        self._load_installed()
        with self._lock:
            return list(self._items.items())

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True  # set first: built-in modules call register() while importing
            try:
                for module in self._builtins:
                    importlib.import_module(module)
            except BaseException:
                self._loaded = False
                raise

    def _load_installed(self) -> None:
        """Installed packages' entry points of group `souk.<kind>`, read once (a scan of every installed
        package's metadata: skipped while every name asked for is a built-in)."""
        if self._installed:
            return
        with self._lock:
            if self._installed:
                return
            self._installed = True
            try:
                self._load_entry_points()
            except BaseException:
                self._installed = False
                raise

    def _load_entry_points(self) -> None:
        for ep in _souk_entry_points().get(f"souk.{self.kind}", ()):
            obj = ep.load()
            if not isinstance(obj, types.ModuleType) and ep.name not in self._items:
                self._put(ep.name, obj, False)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._items)} registered)"


@functools.lru_cache(maxsize=1)
def _souk_entry_points() -> dict[str, tuple[Any, ...]]:
    """Every installed entry point of a `souk.*` group, read once per process (a scan of the installed
    packages' metadata costs milliseconds; every registry shares it)."""
    from importlib.metadata import entry_points

    found = entry_points()  # one scan; Python 3.11 answers a dict of group -> entry points, later ones a flat list
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.11's dict interface warns; it is the one-scan way
        every = [ep for eps in found.values() for ep in eps] if isinstance(found, dict) else list(found)
    out: dict[str, list[Any]] = {}
    for ep in every:
        if ep.group.startswith("souk."):
            out.setdefault(ep.group, []).append(ep)
    return {group: tuple(eps) for group, eps in out.items()}


# ---- options ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The options of a plug-in that takes none (any key is refused)."""


def option_check(check: Callable[[Any], bool], expected: str) -> dict[str, Any]:
    """Field metadata for `parse_options`: `field(default=..., metadata=option_check(lambda v: v > 0,
    "a positive number"))`."""
    return {"check": check, "expected": expected}


POSITIVE_INT = option_check(lambda v: v > 0, "a positive integer")


def parse_options(where: str, raw: dict[str, Any] | None, cls: type[OptionsT]) -> OptionsT:
    """Build the options dataclass `cls` from `raw` (a config table or query parameters), checking keys,
    types (ints are not bools; floats accept ints) and each field's `option_check`.

    Errors: `where: unknown key 'x'; allowed: a, b` and `where.key: expected <type or check>, got <value>`.
    Misuse: passing an object that is not a dataclass type, or mutating the defaults (use default_factory)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    raw = dict(raw or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(fields)) or 'none'}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        f = fields[name]
        hint = hints.get(name, Any)
        ok, expected = _type_ok(value, hint)
        if not ok:
            raise ConfigError(f"{where}.{name}: expected {expected}, got {value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and _wants_float(hint):
            value = float(value)
        check = f.metadata.get("check")
        if check is not None and not check(value):
            raise ConfigError(f"{where}.{name}: expected {f.metadata.get('expected', 'a valid value')}, got {value!r}")
        values[name] = value
    return cls(**values)


def _wants_float(hint: Any) -> bool:
    args = typing.get_args(hint) if _is_union(hint) else (hint,)
    return float in args and int not in args


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _type_ok(value: Any, hint: Any) -> tuple[bool, str]:
    if hint is Any:
        return True, "anything"
    if _is_union(hint):
        results = [_type_ok(value, h) for h in typing.get_args(hint)]
        return any(ok for ok, _ in results), " or ".join(e for _, e in results)
    if hint is type(None):
        return value is None, "none"
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        options = typing.get_args(hint)
        return value in options and type(value) in {type(o) for o in options}, "one of " + ", ".join(map(str, options))
    if origin in (list, tuple):
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        if not isinstance(value, (list, tuple)):
            return False, f"a list of {_type_ok(None, inner)[1] if inner is not Any else 'values'}"
        bad = [v for v in value if not _type_ok(v, inner)[0]]
        return not bad, f"a list of {_type_ok(bad[0], inner)[1]}" if bad else "a list"
    if origin is dict or hint is dict:
        return isinstance(value, dict), "a table"
    if hint is bool:
        return isinstance(value, bool), "true or false"
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), "an integer"
    if hint is float:
        return isinstance(value, Real) and not isinstance(value, bool), "a number"
    if hint is str:
        return isinstance(value, str), "a string"
    if isinstance(hint, type):
        return isinstance(value, hint), hint.__name__
    return True, str(hint)


def lazy_exports(package: str, namespace: dict[str, Any], exports: dict[str, tuple[str, ...]]) -> Callable[[str], Any]:
    """A package's module `__getattr__` (PEP 562) for its flat public names: each name's module (`exports`:
    module -> names) is imported on first use, so importing the package costs nothing it does not use.
    Misuse: a name in two modules (the last one listed wins)."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = namespace[name] = getattr(importlib.import_module(module), name)
        return value

    return __getattr__
