"""Fitted models of one index: versioned directories with a manifest, one active per stage.

Layout: `DIR/models/<stage>-<n>/` (each with `manifest.json`: kind, base model, data and split,
hyper-parameters, seed, dev metrics, curve, time taken, device) and `DIR/models/active.json`
(stage -> directory name, `<stage>-<n>` inside `models/` only). A fit writes into a temporary directory
beside them and is published by a rename plus an atomic rewrite of `active.json`, so a failed or interrupted
fit leaves the active models untouched. Model files are untrusted input: `publish` (and `seal`) records the sha256 of
every file in the manifest (`files`), and `read_model_manifest` checks them before any loader (LightGBM,
torch, numpy) sees the bytes; a directory under `models/` without them, with a changed, missing or extra
file, or a symlink is refused with `ModelUnavailable` naming the model, never a path.

Every stage, query step and tool finds its model the same way: `resolve(index, stage, pinned)` (a model
pinned in the pipeline config, else the active one) and `load(index, stage, loader, pinned)`, one cache of
loaded models keyed by the directory's files (path, names, sizes, times, inodes: a newly activated or
replaced model is loaded again, an unchanged one once per process; `MAX_LOADED` kept, least recently used
dropped). Loaders read their manifest with `read_model_manifest` (the one reader: size, JSON object, kind,
format, file hashes). Misuse: writing into a published model directory (publish a new version); a lambda as
`loader` (each is a new cache key).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable, List, TypeVar

from souk.errors import ModelError, ModelUnavailable, Unavailable
from souk.files import write_json_atomic

MODELS_DIR = "models"
ACTIVE = "active.json"
MANIFEST = "manifest.json"
_VERSION = re.compile(r"^(?P<stage>[a-z][a-z0-9_]*)-(?P<n>\d+)$")
_TMP_PREFIX = ".tmp-"
FILES = "files"  # manifest key: {relative path: sha256 hex} of every file but the manifest
MANIFEST_BYTES = 16 << 20
MAX_MODEL_BYTES = 8 << 30  # all files of one model directory (a MiniLM cross-encoder: 90 MB)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_LOADED = 16  # loaded models kept by `cached` (a MiniLM cross-encoder: 90 MB; most are far smaller)
MAX_LOADED_PER_LOADER = 4  # of them per loader (kind): models replaced by newer activations go first
T = TypeVar("T")


def read_model_manifest(path: Path, kind: str | None = None, verify: bool = True,
                        format: int | None = None) -> dict[str, Any]:
    """The manifest of a model directory; with `kind` (and `format`), refuse a model of another kind (or
    format). With `verify`, the files' hashes are checked (see `check_files`): required for
    `models/<stage>-<n>` directories of an index, checked wherever a manifest lists them.
    Misuse: `json.load` on a model's manifest (no size, shape or hash checks)."""
    file = Path(path) / MANIFEST
    try:
        if file.is_symlink() or (file.exists() and not file.is_file()):
            raise ModelUnavailable(f"model {Path(path).name}: its {MANIFEST} is not a regular file; refit the model")
        with open(file, "rb") as f:
            raw = f.read(MANIFEST_BYTES + 1)
        if len(raw) > MANIFEST_BYTES:
            raise ModelUnavailable(f"model {Path(path).name}: {MANIFEST} is over {MANIFEST_BYTES >> 20} MB; "
                                   "refit the model")
        manifest = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path} is not a souk model directory (no {MANIFEST})") from None
    except (OSError, ValueError, RecursionError) as e:  # JSON and UTF-8 errors are ValueErrors
        raise ModelUnavailable(f"model {Path(path).name}: unreadable {MANIFEST} ({type(e).__name__}); "
                               "refit the model") from None
    if not isinstance(manifest, dict):
        raise ModelUnavailable(f"model {Path(path).name}: {MANIFEST} is not a JSON object; refit the model")
    if kind is not None and manifest.get("kind") != kind:
        raise ModelError(f"{path} holds a {manifest.get('kind')!r} model, not a {kind!r} model")
    if format is not None and manifest.get("format") != format:
        raise ModelError(f"{path}: {kind or 'model'} format {manifest.get('format')!r}; this souk reads format "
                         f"{format}; fit or train it again")
    if verify and (FILES in manifest or in_store(path)):
        check_files(path, manifest)
    return manifest


def in_store(path: Path) -> bool:
    """True for a published model directory of an index (`.../models/<stage>-<n>`), which must be sealed."""
    path = Path(path)
    return path.parent.name == MODELS_DIR and bool(_VERSION.match(path.name))


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` but the manifest, by relative POSIX path; symlinks are refused."""
    folder = Path(folder)
    files = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            p = here / name
            rel = p.relative_to(folder).as_posix()
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                raise ModelUnavailable(f"model {folder.name}: {rel} is a symlink; "
                                       "a model directory holds plain files only")
            if not stat.S_ISDIR(st.st_mode) and not stat.S_ISREG(st.st_mode):  # a FIFO would block the reader forever
                raise ModelUnavailable(f"model {folder.name}: {rel} is not a regular file")
            if stat.S_ISREG(st.st_mode) and rel != MANIFEST:
                files.append((rel, p))
                total += st.st_size
    if total > MAX_MODEL_BYTES:
        raise ModelUnavailable(f"model {folder.name}: its files hold {total >> 20} MB, "
                               f"over the {MAX_MODEL_BYTES >> 30} GB "
                               "a model directory may hold")
    return dict(sorted((rel, file_sha256(p)) for rel, p in files))


def seal(folder: Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record the hashes of the folder's files in its manifest (written atomically); returns the manifest."""
    folder = Path(folder)
    if manifest is None:
        manifest = read_model_manifest(folder, verify=False)
    manifest = {**manifest, FILES: file_hashes(folder)}
    write_json_atomic(folder / MANIFEST, manifest)
    return manifest


def check_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Refuse (`ModelUnavailable`) a model whose files differ from the hashes its manifest lists."""
    folder = Path(folder)
    listed = manifest.get(FILES)
    name = folder.name
    if listed is None:
        raise ModelUnavailable(f"model {name} has no file hashes in its manifest (published by an older souk or "
                               "written by hand); refit it, or activate another with souk models")
    if not isinstance(listed, dict) or not all(isinstance(k, str) and isinstance(v, str) and _SHA256.match(v)
                                               for k, v in listed.items()):
        raise ModelUnavailable(f"model {name}: the manifest's `files` is not a map of file names to sha256; refit it")
    key = _stamp(folder)
    problem = _checked.get(key)
    if problem is None:
        problem = _compare(folder, listed)
        if len(_checked) > 256:
            _checked.clear()
        _checked[key] = problem
    if problem:
        raise ModelUnavailable(f"model {name} is damaged: {problem}; refit it, or activate another with souk models")


_checked: dict[tuple, str] = {}


def _stamp(folder: Path) -> tuple:
    """What a verdict is cached under: the files' names, sizes, times and inodes (a change re-checks)."""
    items: list[Any] = [str(folder.resolve())]
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in sorted(dirnames + filenames):
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                st = None
            items.append((os.path.join(dirpath, name), st and (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino)))
    return tuple(items)


def _compare(folder: Path, listed: dict[str, str]) -> str:
    try:
        found = file_hashes(folder)
    except ModelUnavailable as e:
        return str(e).split(": ", 1)[-1]
    except OSError as e:
        return f"a file cannot be read ({type(e).__name__})"
    for rel, digest in listed.items():
        if rel not in found:
            return f"{rel} is missing"
        if found[rel] != digest:
            return f"{rel} does not match the sha256 in its manifest"
    extra = sorted(set(found) - set(listed))
    if extra:
        return f"{extra[0]} is not listed in its manifest"
    return ""


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve(index_path: str | Path, stage: str, pinned: str | None = None) -> Path | None:
    """The model directory of `stage` for an index: `pinned` (from the pipeline or query config: a model
    of this index by name, e.g. `ltr-2`, or a model directory, relative to the index directory or
    absolute), else the stage's active model; None when none is active. A pinned model that is not there
    is a `ModelError` listing the stage's models; a bad `active.json` is `ModelUnavailable`.
    Misuse: reading `active.json` or joining `models/` paths yourself."""
    store = ModelStore(index_path)
    if pinned is None:
        return store.active(stage)
    if not isinstance(pinned, str) or not pinned:
        raise ModelError(f"a pinned {stage} model is a name like {stage}-2 or a model directory, not {pinned!r}")
    own = store.resolve(pinned)
    if own is not None and (own / MANIFEST).is_file():
        return own
    path = Path(pinned) if Path(pinned).is_absolute() else Path(index_path) / pinned
    if own is None and path.is_dir():
        return path
    known = ", ".join(m["name"] for m in store.list() if m.get("stage") == stage) or "none"
    raise ModelError(f"no {stage} model {pinned!r} in this index (neither a model of this index nor a "
                     f"directory); {stage} models: {known}")


def load(index_path: str | Path, stage: str, loader: Callable[..., T], pinned: str | None = None, *,
         unfitted: str, options: tuple[Hashable, ...] = ()) -> T:
    """The loaded model of `stage` (see `resolve`): `loader(path, *options)` through `cached`;
    `Unavailable(unfitted)` when no model is active (say what to run to fit one). Where a model is
    optional, `resolve` and `cached` give None instead."""
    path = resolve(index_path, stage, pinned)
    if path is None:
        raise Unavailable(unfitted)
    return cached(path, loader, *options)


def cached(path: str | Path, loader: Callable[..., T], *options: Hashable) -> T:
    """`loader(path, *options)`, loaded once while the directory's files stay as they are (see `_stamp`);
    at most `MAX_LOADED` models are kept (`MAX_LOADED_PER_LOADER` of one loader), the least recently used
    dropped. Failures are not kept; a loader
    failing on a manifest of the wrong shape (TypeError, ValueError, KeyError ...) is `ModelUnavailable`
    naming the model."""
    path = Path(path)
    key = (loader, options, _stamp(path))
    with _LOADED_LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
    try:
        model = loader(path, *options)
    except ModelError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:  # a manifest of the wrong shape
        raise ModelUnavailable(f"model {path.name}: malformed ({type(e).__name__}); fit it again, or activate another "
                               "with souk models") from None
    with _LOADED_LOCK:
        _LOADED[key] = model
        _LOADED.move_to_end(key)
        same = [k for k in _LOADED if k[0] == loader]
        for old in same[:max(0, len(same) - MAX_LOADED_PER_LOADER)]:
            del _LOADED[old]
        while len(_LOADED) > MAX_LOADED:
            _LOADED.popitem(last=False)
    return model


def activation(index_path: str | Path) -> tuple[int, int, int] | None:
    """What the index's `active.json` is now (inode, mtime, size; None without one): it changes when a model
    is activated, so a holder of built pipelines knows to build them again (`Engine.pipeline`)."""
    try:
        st = os.stat(Path(index_path) / MODELS_DIR / ACTIVE)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def loaded() -> list[Path]:
    """The model directories `cached` holds now, least recently used first (for tests and /health)."""
    with _LOADED_LOCK:
        return [Path(key[2][0]) for key in _LOADED]


_LOADED: "OrderedDict[tuple, Any]" = OrderedDict()
_LOADED_LOCK = threading.Lock()


class ModelStore:
    """The `models/` directory of one index."""

    def __init__(self, index_path: str | Path):
        self.root = Path(index_path) / MODELS_DIR

    def new(self, stage: str) -> Path:
        """A fresh temporary directory to write a model of `stage` into (publish it when done)."""
        if not _VERSION.match(f"{stage}-0"):
            raise ModelError(f"stage name {stage!r} must be lowercase letters, digits and _")
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.root, prefix=f"{_TMP_PREFIX}{stage}-{os.getpid()}-"))

    def publish(self, stage: str, workdir: Path, manifest: dict[str, Any], activate: bool = True) -> Path:
        """Move a finished `workdir` to `<stage>-<n>` with its manifest; make it active if asked."""
        manifest = {"stage": stage, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **manifest}
        manifest.pop(FILES, None)
        write_json_atomic(Path(workdir) / MANIFEST, manifest)
        seal(workdir, manifest)
        n = 1 + max((n for s, n in map(_version_key, self._versions()) if s == stage), default=0)
        final = self.root / f"{stage}-{n}"
        os.replace(workdir, final)
        if activate:
            self.activate(final.name)
        return final

    def activate(self, name: str) -> None:
        """Make model directory `name` (e.g. `ltr-3`) the active one of its stage."""
        m = _VERSION.match(name) if isinstance(name, str) else None
        if not m or not self._inside(name) or not (self.root / name / MANIFEST).is_file():
            known = ", ".join(p.name for p in self._versions()) or "none"
            raise ModelError(f"no model {name!r} in {self.root}; models: {known}")
        try:  # entries that are not model names, or an unreadable file, are dropped: activating repairs it
            valid = self.active_names()
        except ModelUnavailable:
            valid = {}
        write_json_atomic(self.root / ACTIVE, {**valid, m["stage"]: name})

    def deactivate(self, stage: str) -> bool:
        """Leave `stage` with no active model (its models stay, `activate` brings one back); False when none was."""
        try:
            current = self._active()
        except ModelUnavailable:
            current = {}
        if stage not in current:
            return False
        write_json_atomic(self.root / ACTIVE, {k: v for k, v in current.items()
                                               if k != stage and self._valid_entry(k, v)})
        return True

    def active(self, stage: str) -> Path | None:
        """The active model directory of `stage`, or None when none was fitted. An entry that is not a name
        `<stage>-<n>` of a directory inside `models/` is refused (`ModelUnavailable`), never followed."""
        name = self._active().get(stage)
        if name is None:
            return None
        if not self._valid_entry(stage, name):
            shown = repr(name) if len(repr(name)) <= 80 else f"a long {type(name).__name__}"
            raise ModelUnavailable(f"models/{ACTIVE}: {stage} -> {shown} is not a model name like {stage}-3 inside "
                                   f"models/; activate a model again with souk models --activate {stage}-N")
        return self.root / name if (self.root / name / MANIFEST).is_file() else None

    def active_names(self) -> dict[str, str]:
        """Stage -> active model name, valid entries only (an unreadable `active.json`: `ModelUnavailable`)."""
        return {k: v for k, v in self._active().items() if self._valid_entry(k, v)}

    def seal(self, name: str) -> Path:
        """Record the present files' hashes of model `name` (one published by a souk that did not seal
        models): only for files you trust; the loaders' own checks still apply."""
        path = self.resolve(name)
        if path is None or not (path / MANIFEST).is_file():
            known = ", ".join(p.name for p in self._versions()) or "none"
            raise ModelError(f"no model {name!r} in this index's models/; models: {known}")
        seal(path)
        return path

    def resolve(self, name: str) -> Path | None:
        """The directory of model `name` (`<stage>-<n>`) inside `models/`, or None for any other name."""
        if not isinstance(name, str) or not _VERSION.match(name) or not self._inside(name):
            return None
        return self.root / name

    def _valid_entry(self, stage: Any, name: Any) -> bool:
        m = _VERSION.match(name) if isinstance(name, str) else None
        return m is not None and m["stage"] == stage and self._inside(name)

    def _inside(self, name: str) -> bool:
        """The directory is a real one directly inside models/ (no symlink out of it)."""
        path = self.root / name
        if path.is_symlink():
            return False
        try:
            return path.resolve().parent == self.root.resolve()
        except (OSError, RuntimeError):
            return False

    def list(self) -> List[dict[str, Any]]:
        """Every published model with its manifest and whether it is active, oldest first per stage."""
        try:
            active = set(self.active_names().values())
        except ModelUnavailable:
            active = set()
        out = []
        for path in self._versions():
            try:
                manifest = read_model_manifest(path, verify=False)
            except ModelError as e:
                manifest = {"error": str(e)}
            out.append({"name": path.name, "active": path.name in active, "path": str(path), **manifest})
        return out

    def clean(self) -> int:
        """Remove temporary directories left by interrupted fits (of processes no longer running)."""
        removed = 0
        for p in self.root.glob(_TMP_PREFIX + "*") if self.root.is_dir() else []:
            pid = p.name[len(_TMP_PREFIX):].split("-")[1] if p.name.count("-") >= 3 else ""
            if pid.isdigit() and not _alive(int(pid)) and p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed

    def _versions(self) -> List[Path]:
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink() and _VERSION.match(p.name)]
        return sorted(found, key=_version_key)

    def _active(self) -> dict[str, Any]:
        file = self.root / ACTIVE
        if self.root.is_symlink():  # the index's models would come from wherever it points
            raise ModelUnavailable(f"{MODELS_DIR}/ is a symlink; an index keeps its models in a directory of its own")
        try:
            if file.is_symlink() or (file.exists() and not file.is_file()):
                raise ModelUnavailable(f"models/{ACTIVE} is not a regular file; "
                                       "activate a model again with souk models")
            with open(file, "rb") as f:
                raw = f.read(MANIFEST_BYTES + 1)
            data = json.loads(raw.decode("utf-8")) if len(raw) <= MANIFEST_BYTES else None
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as e:
            raise ModelUnavailable(f"models/{ACTIVE}: unreadable ({type(e).__name__}); "
                                   "activate a model again with souk models") from None
        if not isinstance(data, dict):
            raise ModelUnavailable(f"models/{ACTIVE}: expected a JSON object of stage -> model name; "
                                   "activate a model again with souk models")
        return data


def _version_key(path: Path) -> tuple[str, int]:
    m = _VERSION.match(path.name)
    return (m["stage"], int(m["n"])) if m else (path.name, 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
