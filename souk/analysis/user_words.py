"""Jieba user dictionaries read as untrusted input: `word [count] [tag]` a line, checked before jieba sees them.

A dictionary comes from a schema's `[analysis] user_dict` or from an index's own mined word list
(`souk.training.words`, kept as `INDEX/analysis/words-<version>.txt` and named in the manifest). jieba's
own `load_userdict` accepts anything; here the file's size, the number of words, each word's length and
characters (no whitespace or control characters), the count (a positive integer) and the tag (a few ASCII
letters) are checked, and a bad line is an error naming its line number (never its content).
Misuse: handing jieba a dictionary file directly; `souk.analysis.jieba_dict.new_tokenizer` reads it here.
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from souk.errors import ConfigError
from souk.limits import MAX_USER_DICT_BYTES, MAX_USER_WORD_CHARS, MAX_USER_WORDS, describe_bytes

_TAG = re.compile(r"[A-Za-z]{1,8}")
MAX_COUNT = 10**9
Word = tuple[str, int | None, str | None]  # (word, count or None: jieba suggests one, part-of-speech tag)


def check_word(word: str, where: str) -> str:
    """`word` when it can be a dictionary word (1..MAX_USER_WORD_CHARS printable characters, no spaces)."""
    if not word or len(word) > MAX_USER_WORD_CHARS:
        raise ConfigError(f"{where}: a word must have 1 to {MAX_USER_WORD_CHARS} characters")
    if any(c.isspace() or unicodedata.category(c)[0] in "CZ" for c in word):
        raise ConfigError(f"{where}: a word may not hold spaces or control characters")
    return word


def parse_words(data: bytes, name: str = "user dictionary") -> list[Word]:
    """The words of a dictionary file's bytes; ConfigError (naming `name` and the line) on any bad line."""
    if len(data) > MAX_USER_DICT_BYTES:
        raise ConfigError(f"{name}: larger than {describe_bytes(MAX_USER_DICT_BYTES)}")
    out: list[Word] = []
    for n, line in enumerate(_text(data, name).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(out) >= MAX_USER_WORDS:
            raise ConfigError(f"{name}: more than {MAX_USER_WORDS:,} words")
        if len(parts) > 3:
            raise ConfigError(f"{name} line {n}: expected `word [count] [tag]`")
        word = check_word(parts[0], f"{name} line {n}")
        count: int | None = None
        tag: str | None = None
        rest = parts[1:]
        if rest and rest[0].isascii() and rest[0].isdigit():
            count = int(rest.pop(0))
            if not 1 <= count <= MAX_COUNT:
                raise ConfigError(f"{name} line {n}: the count must be 1 to {MAX_COUNT:,}")
        if rest:
            if len(rest) > 1 or not _TAG.fullmatch(rest[0]):
                raise ConfigError(f"{name} line {n}: expected `word [count] [tag]` (a tag is 1-8 ASCII letters)")
            tag = rest[0]
        out.append((word, count, tag))
    return out


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{name}: not UTF-8 text (byte {e.start})") from None


def read_words(path: str | Path) -> list[Word]:
    """The checked words of a dictionary file (see `parse_words`); a missing or oversized file is a ConfigError."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_USER_DICT_BYTES:
            raise ConfigError(f"user dictionary {path.name}: larger than {describe_bytes(MAX_USER_DICT_BYTES)}")
        with path.open("rb") as f:
            data = f.read(MAX_USER_DICT_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"user dictionary {path.name} cannot be read: {e.strerror}") from None
    return parse_words(data, f"user dictionary {path.name}")


def format_words(words: list[Word]) -> str:
    """The dictionary file text of `words` (checked as `parse_words` would)."""
    lines = []
    for word, count, tag in words:
        check_word(word, "new word")
        lines.append(" ".join([word] + ([str(count)] if count else []) + ([tag] if tag else [])))
    return "".join(line + "\n" for line in lines)
