"""Encoding long corpora: chunks saved as they finish, so an interrupted run resumes where it stopped.

Misuse to avoid: sharing a checkpoint folder between encoders; the default folder is keyed by everything
that decides the vectors (model version, truncation, normalization, path).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from souk.models.encoder import Encoder, TransformerEncoder
from souk.models.registry import cache_dir

EXPIRE_DAYS = 7


def encode_resumable(encoder: Encoder, texts: Sequence[str], checkpoints: Path | None = None, chunk: int = 256,
                     progress: bool = True, description: str = "encoding") -> np.ndarray:
    """Encode in chunks, each saved as `<checkpoints>/<sha1 of its texts>.npy`; after an interruption
    a rerun loads the chunks already done. Default checkpoints: a folder per encoder `fingerprint` in the
    cache (an encoder without one must be given `checkpoints`)."""
    from souk.progress import progress_bar

    if checkpoints is None:
        fingerprint = getattr(encoder, "fingerprint", None)
        if fingerprint is None:
            raise ValueError("this encoder has no fingerprint: pass the checkpoints folder")
        checkpoints = cache_dir() / "encode" / hashlib.sha1(json.dumps(fingerprint).encode()).hexdigest()[:16]
    checkpoints.mkdir(parents=True, exist_ok=True)
    _expire(checkpoints, days=EXPIRE_DAYS)
    parts: list[np.ndarray] = []
    with progress_bar(description, len(texts), enabled=progress) as advance:
        for start in range(0, len(texts), chunk):
            part = [str(t) for t in texts[start:start + chunk]]
            file = checkpoints / (hashlib.sha1("\x1e".join(part).encode()).hexdigest() + ".npy")
            vecs = _load(file)
            if vecs is None or len(vecs) != len(part) or (parts and vecs.shape[1] != parts[0].shape[1]):
                if isinstance(encoder, TransformerEncoder):  # the bar moves per batch
                    vecs = encoder.encode(part, on_batch=advance)
                else:
                    vecs = np.asarray(encoder.encode(part), dtype=np.float32)
                    advance(len(part))
                tmp = file.with_suffix(f".tmp{os.getpid()}.npy")
                np.save(tmp, vecs)
                os.replace(tmp, file)
            else:
                advance(len(part))
            parts.append(vecs)
    return np.concatenate(parts) if parts else np.asarray(encoder.encode([]), dtype=np.float32)


def _load(file: Path) -> np.ndarray | None:
    try:
        vecs = np.load(file)
    except (OSError, ValueError):
        return None
    return vecs if vecs.ndim == 2 and vecs.dtype == np.float32 else None


def _expire(folder: Path, days: float) -> None:
    cutoff = time.time() - days * 86400
    for f in folder.glob("*.npy"):
        try:
            if f.stat().st_mtime < cutoff:
                f.unlink()
        except OSError:
            pass
