"""Query features for intent classification, as blocks registered by name in `INTENT_FEATURES`.

`char`: TF-IDF over character n-grams inside word boundaries (sklearn `char_wb`) of souk's normalized
text (NFKC, casefold, traditional -> simplified), so it reads Chinese and English alike and survives
typos. `minilm`: the packaged sentence encoder's mean-pooled unit vectors (English only), loaded through
`souk.models.encoder.get_encoder`. A model stores the block names with their parameters and arrays, so
prediction rebuilds exactly the training features. Misuse: changing a block's parameters (weight,
n-gram range) after training; the classifier's weights only fit the features it was trained on.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from souk.errors import ConfigError
from souk.plugins import Registry

if TYPE_CHECKING:
    import scipy.sparse as sp  # imported where used: it costs half a second, and `souk search` loads this module

    from souk.models.encoder import TransformerEncoder


class FeatureBlock(Protocol):
    """One block of columns: fitted once on training texts, then a pure function of the text."""

    name: str

    def fit(self, texts: Sequence[str]) -> None: ...

    def transform(self, texts: Sequence[str], progress: bool = False) -> sp.csr_matrix: ...

    def params(self) -> dict[str, Any]: ...

    def arrays(self) -> dict[str, np.ndarray]: ...

    def restore(self, arrays: dict[str, np.ndarray]) -> None: ...


# name -> factory(**params)
INTENT_FEATURES: Registry[Callable[..., FeatureBlock]] = Registry("intent_feature")


def build_block(name: str, params: dict[str, Any]) -> FeatureBlock:
    """The block `name` with `params`; ConfigError names the known blocks or the bad parameter."""
    factory = INTENT_FEATURES.get(name)
    try:
        return factory(**params)
    except TypeError as e:
        raise ConfigError(f"intent feature {name!r}: {e}") from e


@INTENT_FEATURES.register("char")
class CharNgrams:
    """TF-IDF (sublinear tf, l2 rows) of character n-grams of normalized text."""

    name = "char"

    def __init__(self, ngrams: Sequence[int] = (1, 4), min_df: int = 2, max_features: int = 200_000):
        lo, hi = (int(n) for n in ngrams)
        if not 1 <= lo <= hi:
            raise ConfigError(f"char n-gram range must be 1 <= low <= high, got {lo}..{hi}")
        self.ngrams, self.min_df, self.max_features = (lo, hi), int(min_df), int(max_features)
        self._vec: Any = None  # a fitted sklearn TfidfVectorizer

    def _vectorizer(self, vocabulary: dict[str, int] | None = None):
        from sklearn.feature_extraction.text import TfidfVectorizer

        from souk.analysis.normalize import normalize

        return TfidfVectorizer(analyzer="char_wb", ngram_range=self.ngrams, preprocessor=normalize, lowercase=False,
                               sublinear_tf=True, min_df=self.min_df, max_features=self.max_features,
                               vocabulary=vocabulary, dtype=np.float32)

    def fit(self, texts: Sequence[str]) -> None:
        vec = self._vectorizer()
        try:
            vec.fit(list(texts))
        except ValueError:  # min_df left no n-gram (a handful of texts): keep every n-gram instead
            vec.set_params(min_df=1)
            vec.fit(list(texts))
        self._vec = vec

    def transform(self, texts: Sequence[str], progress: bool = False) -> sp.csr_matrix:
        if self._vec is None:
            raise RuntimeError("CharNgrams.transform before fit or restore")
        return self._vec.transform(list(texts)).tocsr()

    def params(self) -> dict[str, Any]:
        return {"ngrams": list(self.ngrams), "min_df": self.min_df, "max_features": self.max_features}

    def arrays(self) -> dict[str, np.ndarray]:
        vocab = self._vec.vocabulary_
        grams = np.empty(len(vocab), dtype=object)
        for gram, column in vocab.items():
            grams[column] = gram
        return {"grams": grams.astype(str), "idf": self._vec.idf_.astype(np.float32)}

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        grams = arrays["grams"].tolist()
        vec = self._vectorizer({g: i for i, g in enumerate(grams)})
        vec.idf_ = arrays["idf"].astype(np.float64)
        self._vec = vec


@INTENT_FEATURES.register("minilm")
class SentenceEmbedding:
    """Unit sentence vectors of a registered bi-encoder (`souk.models.registry`), scaled by `weight`
    (the block's say next to the char n-grams, whose rows are unit vectors too).

    Queries encode on `threads` torch threads (default 1): short inputs gain little from a second thread,
    and on a busy machine two threads lost 8x (500 CLINC queries: 4.5 s on one thread, 34 s on two, while
    other jobs held the cores)."""

    name = "minilm"

    def __init__(self, model: str = "all-MiniLM-L6-v2", weight: float = 1.0, max_length: int = 64, threads: int = 1):
        self.model, self.weight, self.max_length, self.threads = model, float(weight), int(max_length), int(threads)
        self.backend = ""
        self._encoder: TransformerEncoder | None = None

    def fit(self, texts: Sequence[str]) -> None:
        """Nothing to learn: the encoder is pretrained."""

    def transform(self, texts: Sequence[str], progress: bool = False) -> sp.csr_matrix:
        from souk.models.backends import PROBE_DOCS
        from souk.models.encoder import EncoderConfig, get_encoder
        from souk.progress import progress_bar

        texts = list(texts)
        if self._encoder is None:  # resolved once: the backend choice is read from a cache file
            self._encoder = get_encoder(EncoderConfig(model=self.model, max_length=self.max_length),
                                        probe=texts[:PROBE_DOCS])
            self.backend = self._encoder.backend
        encoder = self._encoder
        with progress_bar("encoding queries", len(texts), enabled=progress) as advance, _torch_threads(self.threads):
            vectors = encoder.encode(texts, on_batch=advance)
        import scipy.sparse as sp

        return sp.csr_matrix(vectors * np.float32(self.weight))

    def params(self) -> dict[str, Any]:
        return {"model": self.model, "weight": self.weight, "max_length": self.max_length, "threads": self.threads}

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Nothing stored: the encoder comes from its package."""


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to `n` for the block (process-wide while it runs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Featurizer:
    """The blocks of a model side by side: `transform(texts)` is their columns, concatenated."""

    def __init__(self, blocks: Sequence[FeatureBlock]):
        if not blocks:
            raise ConfigError("an intent model needs at least one feature block (char, minilm)")
        self.blocks = list(blocks)

    @classmethod
    def from_config(cls, config: dict[str, dict[str, Any]]) -> "Featurizer":
        return cls([build_block(name, dict(params)) for name, params in config.items()])

    def config(self) -> dict[str, dict[str, Any]]:
        return {b.name: b.params() for b in self.blocks}

    def fit_transform(self, texts: Sequence[str], progress: bool = False) -> sp.csr_matrix:
        for block in self.blocks:
            block.fit(texts)
        return self.transform(texts, progress)

    def transform(self, texts: Sequence[str], progress: bool = False) -> sp.csr_matrix:
        import scipy.sparse as sp

        parts = [block.transform(texts, progress) for block in self.blocks]
        return parts[0] if len(parts) == 1 else sp.hstack(parts, format="csr", dtype=np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"{b.name}.{key}": value for b in self.blocks for key, value in b.arrays().items()}

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        for b in self.blocks:
            b.restore({key.split(".", 1)[1]: v for key, v in arrays.items() if key.startswith(b.name + ".")})
