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
import importlib
import threading
import types
import typing
from contextlib import contextmanager
from numbers import Real
from typing import Any, Callable, Generic, Iterator, TypeVar, overload

from souk.errors import ConfigError

T = TypeVar("T")
O = TypeVar("O")  # noqa: E741


class Registry(Generic[T]):
    """Named plug-ins of one kind, with built-ins imported lazily and entry points under `souk.<kind>`.

    Misuse: calling `get` at import time of a built-in module (the built-ins are still loading)."""

    def __init__(self, kind: str, builtins: tuple[str, ...] = (), plural: str | None = None,
                 optional: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.plural = plural or kind + "s"
        self._builtins = builtins
        self._optional = dict(optional or {})  # name -> module that registers it (imported only when named)
        self._items: dict[str, T] = {}
        self._loaded = False
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
            raise ConfigError(f"a {self.kind} needs a non-empty name, got {name!r}")
        with self._lock:
            if name in self._items and not replace and self._items[name] is not item:
                raise ConfigError(f"{self.kind} {name!r} is registered twice; pick another name")
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
        if name not in self._items and isinstance(name, str) and name in self._optional:
            importlib.import_module(self._optional[name])
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown {self.kind} {name!r}; known {self.plural}: {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items or name in self._optional

    def names(self) -> list[str]:
        """Every registered name (optional ones included, not loaded), sorted."""
        self._load()
        return sorted({*self._items, *self._optional})

    def items(self) -> list[tuple[str, T]]:
        """The loaded plug-ins as (name, item), sorted by name."""
        self._load()
        return sorted(self._items.items(), key=lambda kv: kv[0])

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
                self._load_entry_points()
            except BaseException:
                self._loaded = False
                raise

    def _load_entry_points(self) -> None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=f"souk.{self.kind}"):
            obj = ep.load()
            if not isinstance(obj, types.ModuleType) and ep.name not in self._items:
                self._put(ep.name, obj, False)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._items)} registered)"


# ---- options ---------------------------------------------------------------------------------------
def option_check(check: Callable[[Any], bool], expected: str) -> dict[str, Any]:
    """Field metadata for `parse_options`: `field(default=..., metadata=option_check(lambda v: v > 0,
    "a positive number"))`."""
    return {"check": check, "expected": expected}


def parse_options(where: str, raw: dict[str, Any] | None, cls: type[O]) -> O:
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
