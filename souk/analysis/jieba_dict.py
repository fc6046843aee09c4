"""jieba's prefix dictionary from a cache built once, memory-mapped instead of unmarshalled per process.

jieba keeps ~500k words and prefixes in a dict that it loads from a marshal file in /tmp on every start
(0.5-1.3 s here), a file any local user could have planted. souk builds the same dictionary once into
`$SOUK_CACHE_DIR/jieba/` (default `~/.cache/souk/jieba/`): sorted UTF-8 keys and their counts as two
`.npy` arrays (read with `allow_pickle=False`, so a damaged file is an error, never code) plus a manifest
naming the jieba version and the dictionary's size and hash. A cache in a directory that another user owns
or can write to is refused (the dictionary is then built in memory, as jieba does without a cache).
`FrozenFreq` answers jieba's lookups from the mapped arrays, remembering each answer: a process that
segments one query touches a few hundred pages, not the whole dictionary.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1
_MISSING = object()
MATERIALIZE = 50_000  # distinct lookups after which a tokenizer's dictionary becomes a plain dict


class FrozenFreq(MutableMapping):
    """jieba's FREQ (word or prefix -> count) over sorted key/count arrays; writes (a user dictionary's
    `add_word`) go to an overlay, so the result is the dict jieba would have built.
    Misuse: iterating it (supported, but it reads the whole dictionary)."""

    def __init__(self, keys: np.ndarray, counts: np.ndarray, owner: Any = None) -> None:
        self._keys, self._counts = keys, counts
        self._memo: dict[str, object] = {}
        self._owner = owner  # a tokenizer doing bulk work gets a plain dict once MATERIALIZE words were read

    def materialize(self) -> dict[str, int]:
        """The whole dictionary as a plain dict (overlay applied)."""
        out = dict(zip((k.decode("utf-8") for k in self._keys), self._counts.tolist()))
        for word, count in self._memo.items():
            if count is _MISSING:
                out.pop(word, None)
            else:
                out[word] = count  # type: ignore[assignment]
        return out

    def _find(self, word: str) -> object:
        found = self._memo.get(word, None)
        if found is not None:
            return found
        raw = word.encode("utf-8")
        if len(raw) > self._keys.dtype.itemsize or b"\0" in raw:
            found = _MISSING
        else:
            i = int(np.searchsorted(self._keys, raw))
            found = int(self._counts[i]) if i < len(self._keys) and self._keys[i] == raw else _MISSING
        self._memo[word] = found
        if self._owner is not None and len(self._memo) > MATERIALIZE:
            self._owner.FREQ, self._owner = self.materialize(), None  # bulk segmentation: dict lookups
        return found

    def __getitem__(self, word: str) -> int:
        found = self._find(word)
        if found is _MISSING:
            raise KeyError(word)
        return found  # type: ignore[return-value]

    def get(self, word, default=None):
        found = self._find(word)
        return default if found is _MISSING else found

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self._find(word) is not _MISSING

    def __setitem__(self, word: str, count: int) -> None:
        self._memo[word] = int(count)

    def __delitem__(self, word: str) -> None:
        if word not in self:
            raise KeyError(word)
        self._memo[word] = _MISSING

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for raw in self._keys:
            word = raw.decode("utf-8")
            seen.add(word)
            if self._find(word) is not _MISSING:
                yield word
        yield from (w for w, v in list(self._memo.items()) if w not in seen and v is not _MISSING)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def cache_root() -> Path:
    """Where souk keeps per-user caches ($SOUK_CACHE_DIR or ~/.cache/souk)."""
    return Path(os.environ.get("SOUK_CACHE_DIR") or Path.home() / ".cache" / "souk")


def _ours(path: Path) -> bool:
    """True when `path` is a real directory or file owned by this user that no one else may write."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISLNK(st.st_mode) or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return False
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _source(dict_file: str) -> dict:
    import jieba

    data = Path(dict_file).read_bytes()
    return {"format": FORMAT, "jieba": getattr(jieba, "__version__", "?"), "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def _source_quick(dict_file: str) -> dict:
    import jieba

    st = os.stat(dict_file)
    return {"format": FORMAT, "jieba": getattr(jieba, "__version__", "?"), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns}


def load_cached(dict_file: str, root: Path | None = None) -> tuple[FrozenFreq, int] | None:
    """The dictionary from the cache when it is ours and was built from `dict_file` as it is now; else None."""
    folder = (root or cache_root()) / "jieba"
    if not (_ours(folder) and _ours(folder / "manifest.json")):
        return None
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("quick") != _source_quick(dict_file):
            return None
        names = [folder / f"{manifest['name']}.{part}.npy" for part in ("keys", "counts")]
        if not all(_ours(p) for p in names):
            return None
        keys = np.load(names[0], mmap_mode="r", allow_pickle=False)
        counts = np.load(names[1], mmap_mode="r", allow_pickle=False)
        total = int(manifest["total"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if keys.dtype.kind != "S" or keys.ndim != 1 or counts.shape != keys.shape or counts.dtype != np.int64:
        return None
    if len(keys) != manifest.get("count"):
        return None
    return FrozenFreq(keys, counts), total


def build_cache(freq: dict[str, int], total: int, dict_file: str, root: Path | None = None) -> bool:
    """Write the dictionary into the cache (atomically; nothing if the folder is not ours). True when written."""
    folder = (root or cache_root()) / "jieba"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return False
    if not _ours(folder):
        return False
    words = sorted(w.encode("utf-8") for w in freq)
    keys = np.array(words, dtype=f"S{max(len(w) for w in words)}")
    counts = np.array([freq[w.decode("utf-8")] for w in words], dtype=np.int64)
    source = _source(dict_file)
    name = f"dict-{source['sha256'][:16]}"
    try:
        for part, array in (("keys", keys), ("counts", counts)):
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npy")
            with os.fdopen(fd, "wb") as f:
                np.save(f, array, allow_pickle=False)
            os.replace(tmp, folder / f"{name}.{part}.npy")
        manifest = {"name": name, "total": int(total), "count": len(words), "source": source,
                    "quick": _source_quick(dict_file)}
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f)
        os.replace(tmp, folder / "manifest.json")
    except OSError:
        return False
    return True


def new_tokenizer(user_dict: str | None = None):
    """A jieba Tokenizer with its dictionary loaded from souk's cache (built on first use), never from
    jieba's shared cache in /tmp."""
    import jieba

    tokenizer = jieba.Tokenizer()
    dict_file = str(Path(jieba.__file__).parent / jieba.DEFAULT_DICT_NAME)
    cached = load_cached(dict_file)
    if cached is None:
        with open(dict_file, "rb") as f:
            freq, total = tokenizer.gen_pfdict(f)
        build_cache(freq, total, dict_file)
        tokenizer.FREQ, tokenizer.total = freq, total
    else:
        tokenizer.FREQ, tokenizer.total = cached
        tokenizer.FREQ._owner = tokenizer
    tokenizer.initialized = True
    if user_dict:  # checked first (`souk.analysis.user_words`): jieba's own reader accepts anything
        from souk.analysis.user_words import read_words

        for word, count, tag in read_words(user_dict):
            tokenizer.add_word(word, count, tag)
    return tokenizer
