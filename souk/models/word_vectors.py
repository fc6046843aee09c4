"""Word and character vectors learned from an index's own text: sentence vectors for Chinese (and any
script its analyzer reads) where no pretrained encoder exists.

A text's *features* are its analyzer terms (jieba search-mode words for Han, words for Latin) plus, for Han
runs, each character (`#字`) and character bigram (`##字词`), so a word the model never saw still shares
pieces with words it did; models fitted with `latin_grams` n also add the character n-grams of longer runs of
Latin letters and digits (`##lia`, at the bigram level), for brands, model numbers and English written without
spaces (`liarliar1997`, `kungpaochickenrecipe`), which the analyzer keeps as one term. A sentence vector is the
weighted sum of its features' vectors, minus its projection on the corpus' first principal component (when the
model keeps one), L2-normalized. Weights start as SIF weights `a / (a + p(f))`; a fine-tuned model
(souk/training/wordvec.py) learns them with the vectors. Vectors come from gensim (`train_gensim`: fastText
over term sequences, whose character n-grams give every character and bigram a vector too); serving is numpy
only, so queries need neither gensim nor torch.

Misuse: encoding queries with another analyzer than the model's (the model records its analyzer and
`WordVectors.features` always uses it).
"""
from __future__ import annotations

import hashlib
import json
import zipfile
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from souk.analysis.normalize import HAN_CLASS, normalize
from souk.analysis.registry import get_analyzer
from souk.errors import ModelError

FORMAT = 1
KIND = "word_vectors"
CHAR, BIGRAM = "#", "##"        # feature prefixes (analyzer terms never start with '#')
USER_DICT = "user_dict.txt"     # the jieba user dictionary the model's analyzer reads, kept inside the model
LATIN_GRAMS = (0, 2, 3, 4, 5)  # n of the Latin character n-grams a model may use (0: none, as models before them)
LEVELS = ("term", "char", "bigram")
SIF_A = 1e-3
_HAN_RUN = re.compile(f"[{HAN_CLASS}]+")
_LATIN_RUN = re.compile("[a-z0-9]+")


def text_features(text: str, analyzer: str = "standard", user_dict: str | None = None,
                  latin_grams: int = 0) -> list[str]:
    """Analyzer terms of `text`, then the characters and character bigrams of its Han runs (prefixed), then with
    `latin_grams` n the character n-grams of its runs of more than n Latin letters and digits (prefixed as bigrams)."""
    out = get_analyzer(analyzer, user_dict).terms(text)
    norm = normalize(text)
    for run in _HAN_RUN.findall(norm):
        out += [CHAR + c for c in run]
        out += [BIGRAM + run[i:i + 2] for i in range(len(run) - 1)]
    if latin_grams:
        out += [BIGRAM + g for run in _LATIN_RUN.findall(norm) for g in latin_ngrams(run, latin_grams)]
    return out


def latin_ngrams(word: str, n: int) -> list[str]:
    """The character n-grams of a Latin word longer than n (none for shorter ones: the word itself is a term)."""
    return [word[i:i + n] for i in range(len(word) - n + 1)] if len(word) > n else []


def feature_level(feature: str) -> int:
    """0 for an analyzer term, 1 for a Han character, 2 for a character bigram."""
    return 2 if feature.startswith(BIGRAM) else 1 if feature.startswith(CHAR) else 0


def feature_text(feature: str) -> str:
    """The text a feature stands for (its prefix removed)."""
    return feature[2:] if feature.startswith(BIGRAM) else feature[1:] if feature.startswith(CHAR) else feature


def sif_weights(counts: np.ndarray, a: float = SIF_A) -> np.ndarray:
    """Smooth inverse frequency weights `a / (a + p)`: frequent features count little."""
    counts = np.asarray(counts, dtype=np.float64)
    return (a / (a + counts / max(counts.sum(), 1.0))).astype(np.float32)


def first_component(vectors: np.ndarray) -> np.ndarray:
    """The first right singular vector of `vectors` (unit length): the direction SIF removes."""
    x = np.asarray(vectors, dtype=np.float32)
    if len(x) == 0:
        return np.zeros(x.shape[1], np.float32)
    _, _, vt = np.linalg.svd(x[: 50_000], full_matrices=False)
    return vt[0].astype(np.float32)


@dataclass
class WordVectors:
    """A vocabulary of features with vectors and weights; texts in, unit sentence vectors out.

    Invariant: `vectors`, `weights` and `features` have one row per vocabulary entry.
    """

    features: list[str]
    vectors: np.ndarray            # (V, dim) float32
    weights: np.ndarray            # (V,) float32, the weight of each feature in a sentence vector
    pc: np.ndarray | None = None   # removed component, or None
    analyzer: str = "standard"
    user_dict: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.latin_grams = self.meta.get("latin_grams", 0)
        if type(self.latin_grams) is not int or self.latin_grams not in LATIN_GRAMS:  # a model file is untrusted
            raise ModelError(f"word vectors: latin_grams must be one of {', '.join(map(str, LATIN_GRAMS))}")
        self.index = {f: i for i, f in enumerate(self.features)}
        self.levels = np.fromiter((feature_level(f) for f in self.features), dtype=np.int8, count=len(self.features))
        if self.vectors.shape[0] != len(self.features) or self.weights.shape[0] != len(self.features):
            raise ModelError(f"word vectors: {len(self.features)} features but {self.vectors.shape[0]} vectors "
                             f"and {self.weights.shape[0]} weights")

    @property
    def fingerprint(self) -> str:
        """A short digest of the vocabulary (feature ids are only meaningful within one vocabulary)."""
        if "_fingerprint" not in self.__dict__:
            self._fingerprint = hashlib.blake2b("\n".join(self.features).encode("utf-8"), digest_size=8).hexdigest()
        return self._fingerprint

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def text_features(self, text: str) -> list[str]:
        return text_features(text, self.analyzer, self.user_dict, self.latin_grams)

    def ids(self, features: Iterable[str]) -> np.ndarray:
        """Vocabulary ids of features, -1 for features the model does not know."""
        get = self.index.get
        return np.fromiter((get(f, -1) for f in features), dtype=np.int32)

    def text_ids(self, text: str) -> np.ndarray:
        return self.ids(self.text_features(text))

    def coverage(self, text: str) -> float:
        """Share of the text's analyzer terms (by characters) the model has vectors for, 0..1; with `latin_grams`
        an unknown Latin term counts by the share of its n-grams the model knows."""
        terms = get_analyzer(self.analyzer, self.user_dict).terms(text)
        total = sum(len(t) for t in terms)
        return sum(self._known_chars(t) for t in terms) / total if total else 0.0

    def _known_chars(self, term: str) -> float:
        if term in self.index:
            return len(term)
        grams = latin_ngrams(term, self.latin_grams) if self.latin_grams and term.isascii() else []
        return len(term) * sum(BIGRAM + g in self.index for g in grams) / len(grams) if grams else 0.0

    def encode_ids(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """Unit sentence vectors of texts given as vocabulary ids (-1 entries are skipped)."""
        from scipy.sparse import csr_matrix

        if not len(rows):
            return np.zeros((0, self.dim), np.float32)
        kept = [r[r >= 0] for r in rows]
        indptr = np.concatenate([[0], np.cumsum([len(r) for r in kept])]).astype(np.int64)
        flat = np.concatenate(kept).astype(np.int64) if indptr[-1] else np.zeros(0, np.int64)
        # texts x vocabulary, each entry the feature's weight (repeats add up), times the vectors
        bag = csr_matrix((self.weights[flat], flat, indptr), shape=(len(rows), len(self.features)), dtype=np.float32)
        out = np.asarray(bag @ self.vectors, dtype=np.float32)
        if self.pc is not None:
            out -= np.outer(out @ self.pc, self.pc)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit sentence vectors, (len(texts), dim) float32; a text with no known feature gets zeros."""
        return self.encode_ids([self.text_ids(t) for t in texts])

    def as_stored(self) -> "WordVectors":
        """This model with its vectors rounded as `save` stores them (float16), so document vectors
        computed before saving equal those computed after loading."""
        return WordVectors(self.features, self.vectors.astype(np.float16).astype(np.float32), self.weights, self.pc,
                           self.analyzer, self.user_dict, dict(self.meta))

    # persistence ---------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """Write `features.txt` and `word_vectors.npz` (vectors as float16) into `folder`, and a copy of the
        analyzer's user dictionary (`USER_DICT`), so the model reads text the same way wherever its index moves
        and whatever later becomes of the file it was fitted with."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        user_dict = None
        if self.user_dict:
            own = folder / USER_DICT
            if not own.exists() or not own.samefile(self.user_dict):
                shutil.copyfile(self.user_dict, own)
            user_dict = USER_DICT
        (folder / "features.txt").write_text("\n".join(self.features) + "\n", encoding="utf-8")
        np.savez(folder / "word_vectors.npz", vectors=self.vectors.astype(np.float16), weights=self.weights,
                 pc=self.pc if self.pc is not None else np.zeros(0, np.float32))
        (folder / "word_vectors.json").write_text(json.dumps(
            {"format": FORMAT, "kind": KIND, "analyzer": self.analyzer, "user_dict": user_dict,
             "dim": self.dim, "features": len(self.features), **self.meta}, ensure_ascii=False, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> "WordVectors":
        folder = Path(folder)
        if (folder / "manifest.json").exists():
            from souk.models.store import read_model_manifest

            read_model_manifest(folder)  # the files' hashes, before numpy reads them
        try:
            info = json.loads((folder / "word_vectors.json").read_text(encoding="utf-8"))
            features = (folder / "features.txt").read_text(encoding="utf-8").split("\n")[:-1]
            arrays = np.load(folder / "word_vectors.npz")
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise ModelError(f"{folder}: not a readable word-vector model ({e}); fit it again with souk fit") from e
        if info.get("format") != FORMAT or info.get("kind") != KIND:
            raise ModelError(f"{folder}: word-vector format {info.get('format')} is not {FORMAT}; fit it again")
        pc = arrays["pc"]
        meta = {k: v for k, v in info.items()
                if k not in ("format", "kind", "analyzer", "user_dict", "dim", "features")}
        return cls(features, arrays["vectors"].astype(np.float32), arrays["weights"].astype(np.float32),
                   pc.astype(np.float32) if len(pc) else None, info["analyzer"],
                   _user_dict(folder, info.get("user_dict")), meta)


def _user_dict(folder: Path, named: Any) -> str | None:
    """The user dictionary a saved model reads: its own copy (`USER_DICT`). Models saved before the copy named the
    index's word list by absolute path (`INDEX/analysis/words-N.txt`, or the shop's file): that name is looked up in
    the model's own index first, so a moved or copied index reads its own list, not the original's."""
    if named is None:
        return None
    if not isinstance(named, str) or "\x00" in named or named in ("", ".", ".."):
        raise ModelError(f"{folder.name}: its user_dict is not a file name; fit it again with souk fit")
    if named == USER_DICT:
        found = folder / USER_DICT
    elif Path(named).is_absolute():
        found = folder.parent.parent / "analysis" / Path(named).name  # souk.index.words.WORDS_DIR (a higher layer)
        if not found.is_file():
            found = Path(named)
    else:
        raise ModelError(f"{folder.name}: its user dictionary must be {USER_DICT} inside the model; fit it again "
                         "with souk fit")
    if not found.is_file():
        raise ModelError(f"{folder.name}: its user dictionary is missing; fit it again with souk fit")
    return str(found)


def train_gensim(sentences: Sequence[Sequence[str]], dim: int = 128, epochs: int = 5, seed: int = 13,
                 workers: int = 2, min_count: int = 1):
    """fastText vectors (skip-gram, character 1-2-grams) over term sequences; returns gensim KeyedVectors.

    Character n-grams matter for Chinese: a word's vector is built from its characters, so `#字` and
    `##字词` features get vectors from the same model (`feature_vectors`)."""
    from gensim.models import FastText

    sentences = [list(s) for s in sentences if s]
    if not sentences:
        raise ModelError("no text to train word vectors on")
    model = FastText(vector_size=dim, window=5, min_count=min_count, min_n=1, max_n=2, sg=1, epochs=epochs,
                     workers=workers, seed=seed, bucket=200_000)
    model.build_vocab(corpus_iterable=sentences)
    model.train(corpus_iterable=sentences, total_examples=len(sentences), epochs=epochs)
    return model.wv


def feature_vectors(wv, features: Sequence[str]) -> np.ndarray:
    """(len(features), dim) vectors from gensim fastText KeyedVectors (characters and bigrams by their text)."""
    return np.stack([wv[feature_text(f)] for f in features]).astype(np.float32) if features \
        else np.zeros((0, wv.vector_size), np.float32)
