"""How a souk schema maps onto tantivy fields (the on-disk layout of the keyword index), and the
boundary where tantivy's failures become `IndexStateError`s.

| souk field kind | tantivy field                                              |
|-----------------|------------------------------------------------------------|
| (every doc)     | `__id` raw text, stored; `__key` i64 fast; `__source` stored JSON bytes |
| text            | analyzed terms joined by spaces, whitespace tokenizer, positions |
| keyword         | raw text, fast (filters, facets), multi-valued              |
| keyword, `hierarchy` | every level's path (`A`, `A > B`, `A > B > C`), so filters and facets work per level |
| number          | f64 indexed + fast (range filters, sort, features)          |
| vector          | stored float32 bytes (the FAISS cache is rebuilt from them) |

souk analyzes text itself (jieba, stemming, OpenCC) and hands tantivy finished terms, so index and
query always share one chain.

Reading takes no lock in the index directory: tantivy's reader wants to create and lock
`.tantivy-meta.lock`, which fails on read-only media and in other users' indexes, so such an index
is opened through a private directory of symlinks to its files (`ReadOnlyLinks`). Every call into
tantivy goes through `guard`: a damaged file (tantivy's `PanicException`, "Data corrupted", "An IO
error occurred") becomes a one-line `IndexStateError` instead of a traceback.
Misuse: calling `tantivy.Index` methods directly instead of through `TantivyIndex`.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import tantivy

from souk.analysis.values import hierarchy_prefixes
from souk.errors import IndexStateError
from souk.index.manifest import FILE_MODE
from souk.schema import Field, Schema

ID, KEY, SOURCE = "__id", "__key", "__source"
TERMS_TOKENIZER = "whitespace"
KEYWORD_DIR = "keyword"
_LOCKS = (".tantivy-meta.lock", ".tantivy-writer.lock")
# tantivy error messages (their Display strings) that mean the files, not the request, are at fault.
_STATE_ERRORS = ("An IO error occurred", "Data corrupted", "Failed to open", "Failed to acquire Lockfile",
                 "Opening an index from an incompatible", "Schema error", "The field does not exist",
                 "Field type mismatch", "System error", "An error occurred in a thread", "Deserialize",
                 "Internal error", "A thread holding the locked panicked")
_DENIED = ("PermissionDenied", "Permission denied", "ReadOnlyFilesystem", "Read-only file system", "os error 30")


def layout(schema: Schema) -> list[tuple[str, str, str | None]]:
    """(name, tantivy type, tokenizer) of every tantivy field, in order: the single source of the layout."""
    out: list[tuple[str, str, str | None]] = [(ID, "text", "raw"), (KEY, "i64", None), (SOURCE, "bytes", None)]
    for f in schema.fields.values():
        if f.kind == "text":
            out.append((f.name, "text", TERMS_TOKENIZER))
        elif f.kind == "keyword":
            out.append((f.name, "text", "raw"))
        elif f.kind == "number":
            out.append((f.name, "f64", None))
        elif f.kind == "vector":
            out.append((f.name, "bytes", None))
    return out


def keyword_terms(field: Field, values: list[str]) -> list[str]:
    """The terms a keyword field indexes for its stored values: the values, or for a hierarchy every
    level's path (a filter on `A > B` then finds `A > B > C`; facets read one level at a time)."""
    return hierarchy_prefixes(values) if field.hierarchy else values


def tantivy_schema(schema: Schema) -> tantivy.Schema:
    """The tantivy schema for a souk schema."""
    sb = tantivy.SchemaBuilder()
    for name, kind, tokenizer in layout(schema):
        if name == ID:
            # (no fast column: ids are read from stored documents and keys, and sorting 50k strings into one
            # cost a third of a commit, measured on homedepot 0.31 -> 0.19 s)
            sb.add_text_field(ID, stored=True, tokenizer_name="raw", fast=False)
        elif name == KEY:
            sb.add_integer_field(KEY, stored=False, indexed=True, fast=True)
        elif name == SOURCE:
            sb.add_bytes_field(SOURCE, stored=True)
        elif kind == "text" and tokenizer == TERMS_TOKENIZER:
            sb.add_text_field(name, stored=False, tokenizer_name=TERMS_TOKENIZER, index_option="position")
        elif kind == "text":
            sb.add_text_field(name, stored=False, tokenizer_name="raw", fast=True)
        elif kind == "f64":
            sb.add_float_field(name, stored=False, indexed=True, fast=True)
        else:
            sb.add_bytes_field(name, stored=True)
    return sb.build()


# ---- the tantivy boundary --------------------------------------------------------------------------
@contextmanager
def guard(path: Path | str, action: str = "read") -> Iterator[None]:
    """Turn tantivy's failures on damaged or unwritable files into a one-line `IndexStateError`.

    `PanicException` (a Rust panic, which Python sees as a BaseException) and tantivy's state errors
    are caught; other errors pass through (they are bugs in the request, not in the files).
    """
    try:
        yield
    except ValueError as e:
        msg = str(e)
        if not msg.startswith(_STATE_ERRORS):
            raise
        raise IndexStateError(
            f"{path}: cannot {action} the keyword index: {_short(msg)}; {_advice(msg, action)}"
        ) from None
    except BaseException as e:
        if type(e).__name__ != "PanicException":
            raise
        raise IndexStateError(
            f"{path}: the keyword index is damaged (tantivy failed: {_short(str(e))}); rebuild it from the catalog"
        ) from None


def _short(msg: str) -> str:
    msg = " ".join(msg.split())
    return msg if len(msg) <= 200 else msg[:197] + "..."


def _advice(msg: str, action: str) -> str:
    if "No space left" in msg or "os error 28" in msg or "File too large" in msg:
        return "the disk is full; the last commit is intact, free space and run again"
    if any(d in msg for d in _DENIED):
        return "no permission to write there; the last commit is intact"
    if action == "write":
        return "the last commit is intact; check free space and permissions, then run again"
    return "the index may be damaged or edited by hand: rebuild it from the catalog"


def _guarded(fn: Callable[..., Any], path: Path, action: str = "read") -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        try:  # inline rather than `with guard(...)`: this wraps every per-hit document fetch
            return fn(*args, **kwargs)
        except BaseException:
            with guard(path, action):
                raise
    return call


class GuardedSearcher:
    """A tantivy searcher whose every method call goes through `guard`."""

    def __init__(self, raw: Any, path: Path):
        self._raw = raw
        self._path = path

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._raw, name)
        return _guarded(value, self._path) if callable(value) else value


class TantivyIndex:
    """The tantivy index of one souk index: reads and reloads guarded, writers refused when read-only."""

    def __init__(self, raw: tantivy.Index, path: Path, links: "ReadOnlyLinks | None" = None):
        self._raw = raw
        self.path = path
        self.links = links

    @property
    def read_only(self) -> bool:
        return self.links is not None

    @property
    def schema(self) -> tantivy.Schema:
        return self._raw.schema

    def reload(self) -> None:
        if self.links is not None:
            self.links.sync()
        with guard(self.path):
            self._raw.reload()

    def searcher(self) -> GuardedSearcher:
        with guard(self.path):
            return GuardedSearcher(self._raw.searcher(), self.path)

    def writer(self, **kwargs: Any) -> Any:
        if self.read_only:
            raise IndexStateError(f"{self.path} can only be read here (read-only media or another user's index); "
                                  "copy it to a directory you can write to before changing it")
        return self._raw.writer(**kwargs)  # lock errors are worded by `Writer`

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._raw, name)
        return _guarded(value, self.path) if callable(value) else value


class ReadOnlyLinks:
    """A private temporary directory of symlinks to the files of a keyword index that cannot be
    written here, so tantivy can take its reader lock there instead. Removed when garbage collected."""

    def __init__(self, source: Path):
        self.source = source
        self.dir = Path(tempfile.mkdtemp(prefix="souk-read-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.dir), True)
        self.sync()

    def sync(self) -> None:
        """Link files the index gained since the last sync (new segments after a commit elsewhere)."""
        try:
            names = os.listdir(self.source)
        except OSError as e:
            raise IndexStateError(f"{self.source}: cannot list the keyword index: {e.strerror}") from None
        for name in names:
            link = self.dir / name
            if name not in _LOCKS and not os.path.lexists(link):
                os.symlink(self.source.resolve() / name, link)


def open_tantivy(path: Path, schema: Schema, create: bool = False) -> TantivyIndex:
    """Open (or create) the tantivy index under `path/keyword`, checking its layout against `schema`."""
    kdir = path / KEYWORD_DIR
    if create:
        with guard(path, "create"):
            kdir.mkdir(parents=True, exist_ok=True)
            return TantivyIndex(tantivy.Index(tantivy_schema(schema), path=str(kdir), reuse=False), path)
    if not kdir.is_dir() or not (kdir / "meta.json").is_file():
        raise IndexStateError(f"{path}: keyword index missing under {kdir}; the index was never committed or was "
                              "damaged: rebuild it from the catalog")
    check_layout(path, schema)
    try:
        with guard(path, "open"):
            return TantivyIndex(tantivy.Index.open(str(kdir)), path)
    except IndexStateError as e:
        if "Failed to acquire Lockfile" not in str(e) or not any(d in str(e) for d in _DENIED):
            raise
    links = ReadOnlyLinks(kdir)  # no permission to lock here: read through private links
    with guard(path, "open"):
        return TantivyIndex(tantivy.Index.open(str(links.dir)), path, links)


def check_layout(path: Path, schema: Schema) -> None:
    """Refuse an index whose manifest schema and tantivy schema disagree (a manifest edited by hand)."""
    meta = path / KEYWORD_DIR / "meta.json"
    try:
        stored = json.loads(meta.read_text(encoding="utf-8"))["schema"]
        actual = {f["name"]: (f["type"], (f["options"].get("indexing") or {}).get("tokenizer")) for f in stored}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise IndexStateError(f"{meta} is unreadable or corrupt ({type(e).__name__}); rebuild the index") from None
    expected = {name: (kind, tokenizer) for name, kind, tokenizer in layout(schema)}
    for name in sorted(set(actual) | set(expected)):
        if actual.get(name) != expected.get(name):
            kind = schema.fields[name].kind if name in schema.fields else None
            said = f"kind {kind!r}" if kind else "no such field"
            has = f"a {actual[name][0]} field" if name in actual else "no such field"
            raise IndexStateError(f"{path}: the manifest says field {name!r} has {said}, but the keyword index holds "
                                  f"{has}; the manifest was edited or belongs to another index: rebuild the index")


def meta_path(path: Path) -> Path:
    """tantivy's commit point: rewritten atomically on each commit."""
    return path / KEYWORD_DIR / "meta.json"


def share_commit_files(path: Path) -> None:
    """Give tantivy's commit files (meta.json, .managed.json, created 0600) the permissions of the
    other files, so other users can read an index this user wrote."""
    for name in ("meta.json", ".managed.json"):
        try:
            os.chmod(path / KEYWORD_DIR / name, FILE_MODE)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.EPERM, errno.EROFS):
                raise
