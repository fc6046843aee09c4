"""Stable 63-bit integer keys for document ids (used by fast fields and FAISS id maps)."""
from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np


def doc_key(doc_id: str) -> int:
    """A non-negative int64 derived from the id: the same id always gives the same key."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big") >> 1


def doc_keys(ids: Iterable[str]) -> np.ndarray:
    """Keys of many ids as an int64 array."""
    return np.fromiter((doc_key(i) for i in ids), dtype=np.int64)
