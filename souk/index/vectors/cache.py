"""Per-commit vector caches: `<index>/vectors/<field>/<commit_id>/`, derived from the vectors in tantivy.

Raw float32 vectors live in tantivy (a stored bytes field per vector field), so one tantivy commit keeps
documents and vectors in step; the backend index is a cache. `open_vector_set` loads the cache of the
searcher's commit, or builds it (incrementally from an older cache when cheaper), writes it to
`.tmp-<commit>-<pid>/` and renames it into place, then keeps the `KEEP_CACHES` newest.

What it never does:
- trust a cache it cannot verify: each records its commit, document and vector counts and a checksum of
  every file; any mismatch rebuilds it.
- touch anything outside the index directory: a `vectors/` or `vectors/<field>` that resolves elsewhere
  (a symlink) is neither read, written nor pruned, and said so (`VectorCacheWarning`).
- fail a search because the cache cannot be written (read-only index, full disk): the set is built in
  memory and used, with a warning.
Temporary folders left by a killed writer (their pid is gone) are removed when the field's cache is opened.

Misuse to avoid: treating the cache as the source of truth (delete `vectors/` at will; it is rebuilt).
"""
from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np

from souk.errors import IndexStateError
from souk.index.vectors.backend import VECTOR_BACKENDS
from souk.index.vectors.config import field_params, pin_model
from souk.index.vectors.vector_set import META, VectorSet

KEEP_CACHES = 2  # commit caches kept per field (the newest by time); older ones are removed
FINGERPRINTS = "fingerprints.npz"
_TMP = re.compile(r"^\.tmp-(?P<commit>.+)-(?P<pid>\d+)$")


class VectorCacheWarning(UserWarning):
    """The vector cache could not be used or written; search goes on from vectors built in memory."""


def open_vector_set(searcher, field) -> VectorSet:
    """The vector set of `field` at the searcher's commit: its verified cache, else built from the stored
    vectors and cached (atomically) when the index directory allows it."""
    params = field_params(searcher.index, field)
    remote = getattr(VECTOR_BACKENDS.get(params["index"]), "open_remote", None)
    if remote is not None:  # the vectors live in another service (Milvus): nothing cached here
        return remote(searcher, field, params)
    index_dir = Path(searcher.path).resolve()
    root = Path(searcher.path) / "vectors" / field.name
    usable = _inside(root, index_dir)
    if not usable:
        _warn(f"{root} leads outside the index ({root.resolve()}); its vector caches are not read, written or pruned")
    else:
        _remove_stale_temps(root)
        vs = _load_verified(root / searcher.commit_id, searcher, params, index_dir)
        if vs is not None:
            return vs
    keys, vectors = stored_vectors(searcher, field.name, params)
    vs = _update_from_older(root, params, keys, vectors, index_dir) if usable else None
    vs, built = (vs, "incremental") if vs is not None else (VectorSet.build(keys, vectors, params), "full")
    vs.meta.update(commit_id=searcher.commit_id, docs=searcher.num_docs, field=field.name, built=built)
    if usable:
        _write(root, searcher.commit_id, vs, keys, vectors, index_dir)
    return vs


def _same_params(cached: VectorSet, params: dict, index_dir: Path) -> bool:
    """Whether a cache was built with `params` (the runtime ones, `field_params`), compared as the manifest pins
    them: a model inside the index relative to it, so that a moved or copied index keeps its caches. On a match
    the set takes the runtime params (its queries are encoded with the model where the index is now)."""
    if pin_model(index_dir, cached.meta.get("params") or {}) != pin_model(index_dir, params):
        return False
    cached.params = params
    return True


def stored_vectors(searcher, name: str, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Keys and (n, dim) vectors of every live document that has a vector in field `name`."""
    keys, blobs = searcher.stored_bytes(name)
    dim, width = params["dim"], params["dim"] * 4
    lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
    present = lengths == width
    odd = lengths[(lengths != width) & (lengths > 0)]
    if len(odd):
        raise IndexStateError(f"field {name!r} stores vectors of {odd[0] // 4} dims but its model "
                              f"{params['model']} gives {dim}; reindex the documents")
    data = b"".join(b for b, ok in zip(blobs, present) if ok)
    return np.asarray(keys, dtype=np.int64)[present], np.frombuffer(data, dtype="<f4").reshape(-1, dim).astype(
        np.float32
    )


# ---- reading ---------------------------------------------------------------------------------
def _load_verified(folder: Path, searcher, params: dict, index_dir: Path) -> VectorSet | None:
    """The cache in `folder` if it is this commit's, complete and intact; None (rebuild) otherwise."""
    if folder.is_symlink() or not (folder / META).exists():
        return None
    try:
        vs = VectorSet.load(folder)
    except Exception:  # damaged beyond reading: rebuilt, never trusted
        return None
    same = (vs.meta.get("commit_id") == searcher.commit_id and vs.meta.get("docs") == searcher.num_docs
            and vs.meta.get("count") == len(vs) and _same_params(vs, params, index_dir))
    return vs if same else None


def _fingerprint(vectors: np.ndarray) -> np.ndarray:
    """A 64-bit hash per row, to tell which documents changed since an older cache."""
    words = np.ascontiguousarray(vectors, dtype=np.float32).view(np.uint32).astype(np.uint64)
    mult = np.random.default_rng(7).integers(1, 2**63, size=words.shape[1], dtype=np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        return (words * mult).sum(axis=1, dtype=np.uint64)


def _update_from_older(root: Path, params: dict, keys: np.ndarray, vectors: np.ndarray,
                       index_dir: Path) -> VectorSet | None:
    """Bring the newest older cache with the same params up to date, or None when a rebuild is better."""
    if not root.is_dir():
        return None
    older = [p for p in _caches(root) if (p / FINGERPRINTS).exists()]
    for folder in sorted(older, key=lambda p: p.stat().st_mtime, reverse=True)[:1]:
        try:
            old = VectorSet.load(folder)  # verifies the fingerprints' checksum too
            saved = np.load(folder / FINGERPRINTS)
        except Exception:
            return None
        if not _same_params(old, params, index_dir):
            return None
        order = np.argsort(saved["keys"])
        old_keys, old_fp = saved["keys"][order], saved["fp"][order]
        pos = np.minimum(np.searchsorted(old_keys, keys), max(len(old_keys) - 1, 0))
        known = old_keys[pos] == keys if len(old_keys) else np.zeros(len(keys), bool)
        changed = ~known | (old_fp[pos] != _fingerprint(vectors)) if len(old_keys) else ~known
        gone = np.setdiff1d(old_keys, keys)
        stale = np.concatenate([gone, keys[changed & known]])
        if changed.sum() + len(gone) > len(keys) // 2:
            return None
        try:
            old.remove(stale)
        except IndexStateError:  # this backend cannot delete: rebuild
            return None
        old.add(keys[changed], vectors[changed])
        return old
    return None


# ---- writing and housekeeping ----------------------------------------------------------------
def _write(root: Path, commit_id: str, vs: VectorSet, keys: np.ndarray, vectors: np.ndarray, index_dir: Path) -> None:
    """Cache `vs` as `root/commit_id` atomically; on a read-only or full disk, warn and keep it in memory."""
    final = root / commit_id
    if final.is_symlink():
        _warn(f"{final} is a symlink; the vector cache of this commit is kept in memory only")
        return
    tmp = root / f".tmp-{commit_id}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not _inside(root, index_dir):  # created through a symlink that appeared meanwhile
            return
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        np.savez(tmp / FINGERPRINTS, keys=keys, fp=_fingerprint(vectors))
        vs.save(tmp, params=pin_model(index_dir, vs.params))
        shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:  # another process put the same commit's cache in place first
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        _warn(f"cannot write the vector cache under {root} ({e.strerror or e}); searching from vectors built in memory")
        return
    _prune(root)


def _caches(root: Path) -> list[Path]:
    """The commit caches in `root` that are real folders inside it (symlinked entries are ignored)."""
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    return [p for p in entries if not p.name.startswith(".") and not p.is_symlink() and p.is_dir()]


def _prune(root: Path) -> None:
    """Keep the `KEEP_CACHES` newest commit caches of a field."""
    caches = sorted(_caches(root), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in caches[KEEP_CACHES:]:
        shutil.rmtree(old, ignore_errors=True)


def _remove_stale_temps(root: Path) -> None:
    """Remove `.tmp-<commit>-<pid>` folders whose writer is dead (a `kill -9` mid-write leaves them)."""
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for p in entries:
        m = _TMP.match(p.name)
        if m and not p.is_symlink() and p.is_dir() and not _alive(int(m["pid"])):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OverflowError:
        return False
    return True


def _inside(path: Path, index_dir: Path) -> bool:
    """Whether `path` (existing or not) resolves to a place inside `index_dir` (already resolved)."""
    try:
        return path.resolve().is_relative_to(index_dir)
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _warn(message: str) -> None:
    warnings.warn(message, VectorCacheWarning, stacklevel=3)
