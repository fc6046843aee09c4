"""Index: where do documents live, and how are they written and read back?

`Index` ties the manifest (schema, format), the tantivy keyword index and the vector caches of one
directory together. Write with `index.writer()`, read with `index.searcher()`.
"""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

from souk.errors import IndexStateError
from souk.index.manifest import MANIFEST, new_manifest, read_manifest, write_json_atomic
from souk.index.store import KEYWORD_DIR, TantivyIndex, open_tantivy
from souk.schema import Schema, for_new_index

__all__ = ["Index"]


class Index:
    """One index directory: `manifest.json`, `keyword/` (tantivy), `vectors/` (FAISS caches)."""

    def __init__(self, path: Path, schema: Schema, manifest: dict[str, Any], tantivy_index: TantivyIndex):
        self.path = path
        self.schema = schema
        self.manifest = manifest
        self._tantivy = tantivy_index
        self._created = False  # made by `create` in this process (so `discard` may remove it)
        self._made: Path | None = None  # the topmost directory `create` made

    @classmethod
    def create(cls, path: str | Path, schema: Schema) -> "Index":
        """Create an empty index; refuses a directory that already holds one, and paths that are
        files, under files, dangling symlinks or symlink loops. Nothing is left behind on failure.
        Vector fields' params are checked and completed first (model looked up, dimension read) and
        pinned in the manifest."""
        from souk.index.vectors.config import validate_params

        path = Path(path)
        vectors = {f.name: validate_params(f) for f in schema.vector_fields}
        check_index_path(path)
        schema = for_new_index(schema)
        if (path / MANIFEST).exists():
            raise IndexStateError(f"{path} already holds an index; open it to add documents, or delete the directory")
        if path.is_dir() and any(path.iterdir()):
            raise IndexStateError(f"{path} is not empty and holds no souk index; choose a new or empty directory")
        made = _first_missing(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            tindex = open_tantivy(path, schema, create=True)
            own = _own_user_dict(path, schema)
            manifest = new_manifest(schema.to_dict(), **({"vectors": vectors} if vectors else {}),
                                    **({"words": own} if own else {}))
            write_json_atomic(path / MANIFEST, manifest)
        except BaseException as e:
            _remove_created(path, made)
            if isinstance(e, OSError):
                raise IndexStateError(f"cannot create an index in {path}: {e.strerror or e}") from None
            raise
        index = cls(path, schema, manifest, tindex)
        index._created, index._made = True, made
        return index

    @classmethod
    def open(cls, path: str | Path) -> "Index":
        """Open an existing index (the schema comes from its manifest). Takes no lock: an index on
        read-only media or of another user opens for reading (`read_only`)."""
        path = Path(path)
        check_index_path(path, must_exist=True)
        manifest = read_manifest(path)
        schema = Schema.from_dict(manifest["schema"], origin=f"{path}/{MANIFEST}")
        if "words" in manifest:  # the index's own word list (checked) is the analyzers' user dictionary
            from souk.index.words import words_path

            schema.analysis["user_dict"] = str(words_path(path, manifest["words"]).resolve())
        return cls(path, schema, manifest, open_tantivy(path, schema))

    @property
    def read_only(self) -> bool:
        """True when this process can only read the index (`writer()` would refuse)."""
        return self._tantivy.read_only

    def discard(self) -> None:
        """Remove an index this process just created (after a failed first run), leaving the
        directory as it was; refuses an index it did not create."""
        if not self._created:
            raise IndexStateError(f"{self.path} was not created by this process; it is not removed")
        _remove_created(self.path, self._made)
        self._created, self._made = False, None

    @classmethod
    def exists(cls, path: str | Path) -> bool:
        return (Path(path) / MANIFEST).is_file()

    def writer(self, heap_mb: int = 128, threads: int = 1):
        """The single writer of this index (see `souk.index.writer.Writer`)."""
        from souk.index.writer import Writer

        return Writer(self, heap_mb=heap_mb, threads=threads)

    def searcher(self):
        """A snapshot searcher of the last commit."""
        from souk.index.searcher import Searcher

        return Searcher(self)

    def stats(self) -> dict[str, Any]:
        """Document count, fields, bytes on disk, segments, last commit time and the models of vector fields."""
        searcher = self.searcher()
        size = _disk_bytes(self.path)
        manifest = read_manifest(self.path)
        return {
            "docs": searcher.num_docs,
            "fields": [{"name": f.name, "kind": f.kind} for f in self.schema.fields.values()],
            "bytes": size,
            "segments": searcher._s.num_segments,
            "updated": manifest.get("updated"),
            "models": _models_here(self, manifest.get("models", {})),
            **_cross_record(self.path),
        }


def _models_here(index: "Index", models: dict[str, Any]) -> dict[str, Any]:
    """The manifest's model records (what the committing machine measured), each with `here`: the path its
    queries take in this process and whether this machine measured it (`query_path_here`)."""
    from souk.errors import SoukError
    from souk.index.vectors import field_params
    from souk.index.vectors.encoding import query_path_here

    out = {}
    for name, record in models.items():
        out[name] = record
        field = index.schema.fields.get(name)
        if isinstance(record, dict) and field is not None and field in index.schema.vector_fields:
            try:
                out[name] = {**record, "here": query_path_here(field_params(index, field))}
            except (SoukError, OSError, KeyError, TypeError, ValueError):
                pass  # a record that no longer resolves: shown as committed
    return out


def _cross_record(path: Path) -> dict[str, Any]:
    """`{"cross": ...}`: the active cross-encoder, the path searches take with it on this machine (`backend`),
    whether this machine measured that choice (`measured_here`; else it is the unmeasured path until activation
    or a server measures it) and each measured path's speed and agreement."""
    from souk.errors import ModelError
    from souk.models.store import ModelStore

    try:
        model = ModelStore(path).active("cross")
    except ModelError:
        return {}
    if model is None:
        return {}
    from souk.models.cross_encoder import measured_path, path_here

    choice = measured_path(model) or {}
    backend, measured = path_here(model)
    return {"cross": {"model": model.name, "backend": backend, "measured_here": measured,
                      "measured": {n: r for n, r in choice.get("paths", {}).items() if "pairs_per_s" in r}}}


def check_index_path(path: Path, must_exist: bool = False) -> None:
    """A one-line `IndexStateError` when `path` cannot be an index directory: a regular file, a path
    under a file, a dangling symlink, a symlink loop (or, with `must_exist`, nothing at all)."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise IndexStateError(f"--index {path} is a symlink loop; name a directory") from None
        if e.errno == errno.ENOTDIR:
            blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), path.parent)
            raise IndexStateError(f"--index {path} lies under {blocker}, which is a file, not a directory") from None
        if e.errno == errno.ENOENT and os.path.islink(path):
            raise IndexStateError(f"--index {path} is a symlink to {os.readlink(path)}, which does not exist") from None
        if e.errno == errno.EACCES:
            raise IndexStateError(f"--index {path} cannot be reached: permission denied") from None
        if e.errno == errno.ENOENT:
            if must_exist:
                raise IndexStateError(f"{path} is not a souk index (it does not exist); create it with "
                                      f"`souk index DATA --index {path}`") from None
            return
        raise IndexStateError(f"--index {path} cannot be used: {e.strerror}") from None
    if not os.path.isdir(path):
        raise IndexStateError(f"--index {path} is a file, not an index directory")
    del st


def _first_missing(path: Path) -> Path | None:
    """The topmost directory `mkdir -p path` would create (None when `path` exists)."""
    made = None
    for p in [path, *path.parents]:
        if os.path.lexists(p):
            break
        made = p
    return made


def _remove_created(path: Path, made: Path | None) -> None:
    """Undo `Index.create`: its files, then the directories it made, only while they are empty."""
    from souk.index.words import WORDS_DIR

    for name in (KEYWORD_DIR, "vectors", WORDS_DIR):  # (WORDS_DIR: the copy of the schema's user dictionary)
        sub = path / name
        if sub.is_dir() and not sub.is_symlink():
            shutil.rmtree(sub, ignore_errors=True)
    for leftover in path.glob(f".{MANIFEST}.*.tmp"):
        leftover.unlink(missing_ok=True)
    (path / MANIFEST).unlink(missing_ok=True)
    from souk.index.writer import TURN_FILE

    (path / TURN_FILE).unlink(missing_ok=True)  # the write turn of a failed first run
    if made is None:
        return
    for p in [path, *path.parents]:
        try:
            p.rmdir()  # only empty directories go: never anything this process did not make
        except OSError:
            break
        if p == made:
            break


def _disk_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _own_user_dict(path: Path, schema: Schema) -> dict[str, Any] | None:
    """The schema's `[analysis] user_dict` (a file of the user's, outside the index) copied into the index as its
    first word list (`souk.index.words`), so that the index can be moved or copied to another machine, and an
    edit of the user's file later cannot make query terms differ from the indexed ones; its manifest entry, or
    None without a user dictionary."""
    user_dict = schema.analysis.get("user_dict")
    if not user_dict:
        return None
    from souk.analysis.user_words import format_words, read_words
    from souk.index.words import write_words

    words = read_words(user_dict)
    return write_words(path, 1, format_words(words), len(words), source="schema user_dict")
