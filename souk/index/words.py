"""An index's own word list for jieba (new words mined by `souk.training.words`), versioned in the manifest.

The list lives in `INDEX/analysis/words-<version>.txt`; the manifest's `words` entry names the version, the
file's sha256 and its word count, and is written with the commit that re-analyzed every document with it
(`souk.indexing.reanalyze`), so index terms and query terms always come from the same dictionary. On open,
the entry is checked (the file inside the index, a regular file, the hash as recorded) and the words file
becomes the schema's `[analysis] user_dict` for this process; its lines are checked again when jieba loads
them (`souk.analysis.user_words`). A new version is a new file name, so caches keyed by the dictionary's
path (jieba tokenizers, analyzers) never mix versions. Misuse: editing a words file in place (the hash check
refuses the index); mine and re-index instead.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Any

from souk.errors import IndexStateError
from souk.limits import MAX_USER_DICT_BYTES

WORDS_DIR = "analysis"
_NAME = re.compile(r"words-([0-9]{1,9})\.txt")


def words_path(index_dir: Path, entry: Any) -> Path:
    """The checked words file of the manifest's `words` entry; IndexStateError when it is missing or altered."""
    what = f"{index_dir}: the manifest's word list"
    if not (isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("sha256"), str)):
        raise IndexStateError(f"{what} is corrupt (expected file and sha256); rebuild the index")
    folder, _, name = entry["file"].partition("/")
    if folder != WORDS_DIR or not _NAME.fullmatch(name):
        raise IndexStateError(f"{what} must name {WORDS_DIR}/words-<version>.txt; rebuild the index")
    path = index_dir / WORDS_DIR / name
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or stat.S_ISLNK(os.lstat(path.parent).st_mode):
            raise IndexStateError(f"{what} is not a regular file inside the index; rebuild the index")
        if st.st_size > MAX_USER_DICT_BYTES:
            raise IndexStateError(f"{what} is larger than the limit; rebuild the index")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise IndexStateError(f"{what} cannot be read ({e.strerror}); rebuild the index") from None
    if digest != entry["sha256"]:
        raise IndexStateError(f"{what} was changed after it was indexed; re-run `souk fit --stages words` or "
                              "rebuild the index")
    return path


def next_version(manifest: dict[str, Any]) -> int:
    """The version a new word list of this index gets (1 for the first)."""
    entry = manifest.get("words")
    version = entry.get("version") if isinstance(entry, dict) else 0
    return (version if isinstance(version, int) and version > 0 else 0) + 1


def write_words(index_dir: Path, version: int, text: str, count: int, **extra: Any) -> dict[str, Any]:
    """Write word list `version` into the index (atomically) and return its manifest entry."""
    from souk.files import write_text_atomic

    folder = index_dir / WORDS_DIR
    folder.mkdir(exist_ok=True)
    name = f"words-{version}.txt"
    data = text.encode("utf-8")
    write_text_atomic(folder / name, text)
    return {"version": version, "file": f"{WORDS_DIR}/{name}", "sha256": hashlib.sha256(data).hexdigest(),
            "count": count, **extra}


def reanalyze(index_path: str | Path, text: str, count: int, progress: Any = None, batch: int = 512,
              **extra: Any) -> dict[str, Any]:
    """Make `text` (a checked word list: `souk.analysis.user_words.format_words`) the index's next word list and
    write every document again from its stored values, analyzed with it, in one commit that also records the
    list in the manifest. A failure leaves the index and its manifest as they were (the new file removed).
    Misuse: an index whose fields are not all stored (refused: their terms would be lost)."""
    from souk.analysis.user_words import parse_words
    from souk.errors import ConfigError
    from souk.index import Index
    from souk.index.writer import write_turn

    parse_words(text.encode("utf-8"), "new word list")  # what open() will accept
    index = Index.open(index_path)
    lost = [f.name for f in index.schema.fields.values() if not f.stored and not f.copy_from and f.kind != "vector"]
    if lost:
        raise ConfigError(f"{index.path}: fields {', '.join(lost)} are not stored, so documents cannot be analyzed "
                          "again; reindex from the catalog with the word list instead")
    with write_turn(index.path):
        index = Index.open(index_path)  # the manifest as it is inside the turn
        version = next_version(index.manifest)
        entry = write_words(index.path, version, text, count, **extra)
        try:
            index.schema.analysis["user_dict"] = str((index.path / entry["file"]).resolve())
            searcher = index.searcher()
            ids = searcher.ids()
            with index.writer() as writer:
                for start in range(0, len(ids), batch):
                    writer.rewrite(d for d in searcher.docs(ids[start:start + batch]) if d is not None)
                    if progress:
                        progress(min(batch, len(ids) - start))
                writer.commit(words=entry)
        except BaseException:
            (index.path / entry["file"]).unlink(missing_ok=True)
            raise
    return {"version": version, "words": count, "docs": len(ids), "file": entry["file"]}
