"""Training the entity tagger (`souk ner train`): mini-batch Adam (SparseAdam for the character and bigram
embeddings) on the CRF log-likelihood with a decaying learning rate in the one training loop
(`souk.training.loop`), one evaluation per epoch: the best epoch by dev entity F1 kept, early stopping, an
optional time budget, and optional word2vec vectors (character and bigram) pre-trained on unlabeled titles
and queries.

Reproducible: one seed drives torch, the batch order and word2vec (run single-threaded).
Misuse: reporting the dev F1 used for early stopping as a held-out test figure.
"""
from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, cast

from souk.errors import DatasetError
from souk.version import __version__
from souk.query.entities.data import TaggedSentence
from souk.query.entities.entity import bio_spans
from souk.query.entities.features import Featurizer, Lexicon, Vocab, bigrams
from souk.query.entities.metrics import EntityScores, entity_scores
from souk.query.entities.tagger import Tagger
from souk.query.entities.text import char_key

if TYPE_CHECKING:
    from souk.query.entities.network import BiLstmCrf

Progress = Callable[[int, str], None]  # (batches done since last call, status line)


@dataclass
class TrainConfig:
    """Optimization settings; the network's sizes are in `NetworkConfig`."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-2
    lr_decay: float = 0.95  # learning rate multiplied by this after every epoch
    clip: float = 5.0
    patience: int = 6  # epochs without a better dev F1 before stopping
    seed: int = 13
    budget_s: float | None = None  # wall-clock seconds for the whole run: no epoch starts that would end past it
    segments: bool = True  # jieba word-position features
    lexicon: bool = True  # bits for the entity strings of the training titles (jackknifed, see `_fold_lexicons`)
    lexicon_folds: int = 5
    pretrain: list[str] = field(default_factory=list)  # unlabeled text files, one title or query a line
    pretrain_epochs: int = 3
    pretrain_min_count: int = 3
    members: int = 3  # networks trained from seeds seed, seed+1, ... and ensembled (1: a single network)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EpochResult:
    epoch: int
    loss: float
    dev: EntityScores
    seconds: float


@dataclass
class TrainResult:
    tagger: Tagger
    best: EpochResult
    history: list[EpochResult]
    seconds: float


def new_tagger(train: Sequence[TaggedSentence], config: TrainConfig | None = None, network_config=None) -> Tagger:
    """An untrained tagger: vocabularies and tag set of `train` (plus word2vec vectors when
    `config.pretrain` names unlabeled text), weights drawn from `config.seed`."""
    import torch

    from souk.query.entities.network import BiLstmCrf, NetworkConfig

    config = config or TrainConfig()
    network_config = network_config or NetworkConfig()
    if not config.segments:
        network_config = replace(network_config, segment_dim=0)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    tags = _tag_set(train)
    vectors = _pretrain(train, config, network_config) if config.pretrain else {}
    chars = Vocab.build(_by_count(u for s in train for u in s.chars) + list(vectors.get("chars", {})))
    bigram_vocab = Vocab.build(_by_count(b for s in train for b in bigrams(s.chars)) + list(vectors.get("bigrams", {})))
    lexicon = Lexicon(_entity_words(train, tags)) if config.lexicon else None
    network_config = replace(network_config, lexicon_width=lexicon.width if lexicon else 0)
    network = BiLstmCrf(network_config, len(chars), len(bigram_vocab), tags)
    _load_vectors(network.chars, chars, vectors.get("chars", {}))
    if network.bigrams is not None:
        _load_vectors(network.bigrams, bigram_vocab, vectors.get("bigrams", {}))
    return Tagger(network, Featurizer(chars, bigram_vocab, config.segments, lexicon), tags)


def train_tagger(train: Sequence[TaggedSentence], dev: Sequence[TaggedSentence], config: TrainConfig | None = None,
                 network_config=None, progress: Progress | None = None) -> TrainResult:
    """Train `config.members` networks on `train` from seeds `seed, seed+1, ...`, each keeping its epoch
    with the best entity F1 on `dev`; with more than one, the tagger is their ensemble."""
    import torch

    from souk.query.entities.network import Ensemble

    config = config or TrainConfig()
    if config.members < 1:
        raise DatasetError(f"members must be at least 1, got {config.members}")
    t0 = time.perf_counter()
    tagger = new_tagger(train, config, network_config)
    networks: list[Any] = []
    runs = []
    for m in range(config.members):
        member_config = replace(config, seed=config.seed + m,
                                budget_s=config.budget_s * (m + 1) / config.members - (time.perf_counter() - t0)
                                if config.budget_s is not None else None)
        member = tagger if m == 0 else _same_features(new_tagger(train, member_config, network_config), tagger)
        label = f"member {m + 1}/{config.members} " if config.members > 1 else ""
        runs.append(_fit_member(member, train, dev, member_config, progress, label))
        networks.append(cast("BiLstmCrf", member.network))  # a member: never an ensemble
    if len(networks) > 1:
        tagger = Tagger(Ensemble(networks), tagger.features, tagger.tags)
    ensemble_dev = evaluate_tagger(tagger, dev) if len(networks) > 1 else runs[0][0].dev
    best = max((r[0] for r in runs), key=lambda r: r.dev.f1)
    best = EpochResult(best.epoch, best.loss, ensemble_dev, best.seconds)
    seconds = time.perf_counter() - t0
    history = [h for _, hist in runs for h in hist]
    tagger.manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "souk": __version__, "seed": config.seed,
        "training": {**config.to_dict(), "sentences": len(train), "dev_sentences": len(dev),
                     "epochs_run": len(history), "best_epoch": best.epoch,
                     "seconds": round(seconds, 1), "threads": torch.get_num_threads(),
                     "members": [{"seed": config.seed + m, "best_epoch": b.epoch, "dev_f1": round(b.dev.f1, 4),
                                  "history": [{"epoch": h.epoch, "loss": round(h.loss, 4), "dev_f1": round(h.dev.f1, 4),
                                               "seconds": round(h.seconds, 1)} for h in hist]}
                                 for m, (b, hist) in enumerate(runs)]},
        "dev": ensemble_dev.to_dict(),
    }
    return TrainResult(tagger, best, history, seconds)


def _same_features(member: Tagger, first: Tagger) -> Tagger:
    """`member` reading `first`'s features (the vocabularies are built from the same data, so the same)."""
    mine, theirs = member.features, first.features
    if mine.chars.tokens != theirs.chars.tokens or mine.bigrams.tokens != theirs.bigrams.tokens:
        raise DatasetError("ensemble members built different vocabularies; train with --members 1")
    member.features = first.features
    return member


def _fit_member(tagger: Tagger, train: Sequence[TaggedSentence], dev: Sequence[TaggedSentence], config: TrainConfig,
                progress: Progress | None, label: str = "") -> tuple[EpochResult, list[EpochResult]]:
    """Train one network in place in the one loop: an evaluation per epoch, the best dev epoch's weights
    restored, early stopping, the budget as the loop's deadline."""
    from souk.query.entities.network import Batch
    from souk.training.kit import DevEvaluator
    from souk.training.loop import LoopConfig, Phase, train as loop_train

    t0 = time.perf_counter()
    network, tags = cast("BiLstmCrf", tagger.network), tagger.tags  # a member: never an ensemble
    tag_id = {t: i for i, t in enumerate(tags)}
    lexicons = _fold_lexicons(train, tags, config) if config.lexicon else [None] * len(train)
    encoded = [tagger.features.encode(s.chars, lex) for s, lex in zip(train, lexicons)]
    gold = [[tag_id[t] for t in s.tags] for s in train]
    rng = random.Random(config.seed)
    per_epoch = -(-len(encoded) // config.batch_size)
    history: list[EpochResult] = []
    seen = {"epoch": 0, "total": 0.0, "count": 0, "start": time.perf_counter(), "best": -1.0}

    def batches(epoch: int):
        seen.update(epoch=epoch + 1, total=0.0, count=0, start=time.perf_counter())
        return _batches(encoded, config.batch_size, rng)

    def loss_of(net, idx: list[int]):
        loss = net.loss(Batch.of([encoded[i] for i in idx], [gold[i] for i in idx]))
        seen["total"] += loss.item() * len(idx)
        seen["count"] += len(idx)
        if progress:
            best = f" dev F1 {seen['best']:.4f}" if history else ""
            progress(1, f"{label}epoch {seen['epoch']} loss {seen['total'] / seen['count']:.3f}{best}")
        return loss

    def dev_f1() -> float:
        scores = evaluate_tagger(tagger, dev)
        result = EpochResult(int(seen["epoch"]), seen["total"] / max(seen["count"], 1), scores,
                             time.perf_counter() - seen["start"])
        history.append(result)
        seen["best"] = max(seen["best"], scores.f1)
        if progress:
            progress(0, f"{label}epoch {result.epoch} loss {result.loss:.3f} dev F1 {scores.f1:.4f} "
                        f"(best {seen['best']:.4f})")
        return scores.f1

    left = config.budget_s - (time.perf_counter() - t0) if config.budget_s is not None else 10**9
    deadline = time.monotonic() + left
    loop = LoopConfig(lr=config.lr, weight_decay=0.0, warmup_steps=0, eval_every=per_epoch, patience=config.patience,
                      grad_clip=config.clip, seed=None, eval_at_start=False, optimizer="adam", autocast=False,
                      lr_decay=config.lr_decay)
    result = loop_train(network, [Phase("tagged", batches, per_epoch, config.epochs)], loss_of,
                        DevEvaluator(dev_f1, "entity f1"), deadline, loop, "cpu", progress=False)
    if not history:  # the budget ended the first epoch before its evaluation: the weights as they are
        dev_f1()
        return history[0], history
    best = next(h for h in history if h.dev.f1 == result.best)
    return best, history


def evaluate_tagger(tagger: Tagger, sentences: Sequence[TaggedSentence]) -> EntityScores:
    """Entity-level scores of the tagger on gold-tagged sentences."""
    return entity_scores([s.tags for s in sentences], tagger.predict([s.chars for s in sentences]))


def _entity_words(sentences: Sequence[TaggedSentence], tags: Sequence[str]) -> dict[str, Iterable[str]]:
    words: dict[str, set[str]] = {t[2:]: set() for t in tags if t != "O"}
    for s in sentences:
        for kind, start, end in bio_spans(s.tags):
            words[kind].add("".join(s.chars[start:end]))
    return {t: sorted(w) for t, w in words.items()}


def _fold_lexicons(train: Sequence[TaggedSentence], tags: Sequence[str], config: TrainConfig) -> list[Lexicon]:
    """The lexicon each training sentence sees: built from the other folds only, so its own
    entities are marked only when other titles hold them too, as on unseen text (otherwise the
    network learns that lexicon bits are always right and trusts them blindly)."""
    k = max(2, config.lexicon_folds)
    order = list(range(len(train)))
    random.Random(config.seed).shuffle(order)
    fold_of = {i: n % k for n, i in enumerate(order)}
    lexicons = [Lexicon(_entity_words([s for i, s in enumerate(train) if fold_of[i] != f], tags)) for f in range(k)]
    return [lexicons[fold_of[i]] for i in range(len(train))]


def _tag_set(train: Sequence[TaggedSentence]) -> list[str]:
    types = sorted({t[2:] for s in train for t in s.tags if t != "O"})
    if not types:
        raise DatasetError("the training data tags no entity (every tag is O)")
    return ["O", *(f"{p}-{t}" for t in types for p in "BI")]


def _by_count(tokens) -> list[str]:
    return [t for t, _ in Counter(tokens).most_common()]


def _batches(encoded, size: int, rng: random.Random) -> list[list[int]]:
    """Batches of sentences of similar length (less padding), in a shuffled order."""
    order = list(range(len(encoded)))
    rng.shuffle(order)
    chunks = [order[i: i + size * 50] for i in range(0, len(order), size * 50)]
    batches = []
    for chunk in chunks:
        chunk.sort(key=lambda i: len(encoded[i].chars))
        batches += [chunk[i: i + size] for i in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return batches


def _corpus(train: Sequence[TaggedSentence], files: Sequence[str]) -> list[list[str]]:
    """Unit sequences of the training titles plus every line of the unlabeled files."""
    sentences = [list(s.chars) for s in train]
    for name in files:
        path = Path(name)
        if not path.is_file():
            raise DatasetError(f"{path}: no such file (pre-training text, one title or query a line)")
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                units = [k for c in line if not c.isspace() for k in char_key(c) if not k.isspace()]
                if units:
                    sentences.append(units)
    return sentences


def _pretrain(train, config: TrainConfig, network_config) -> dict[str, dict[str, Any]]:
    """word2vec vectors of characters and bigrams ({"chars": {unit: vector}, "bigrams": {...}})."""
    from gensim.models import Word2Vec

    corpus = _corpus(train, config.pretrain)
    out: dict[str, dict[str, Any]] = {}
    for name, sentences, dim in (("chars", corpus, network_config.char_dim),
                                 ("bigrams", [bigrams(s) for s in corpus], network_config.bigram_dim)):
        if not dim:
            continue
        model = Word2Vec(sentences, vector_size=dim, window=5, min_count=config.pretrain_min_count, sg=1,
                         workers=1, seed=config.seed, epochs=config.pretrain_epochs)
        out[name] = {w: model.wv[w] for w in model.wv.index_to_key}
    return out


def _load_vectors(embedding, vocab: Vocab, vectors: dict[str, Any]) -> None:
    """Copy pre-trained vectors into an embedding, scaled to the embedding's initial spread."""
    import numpy as np
    import torch

    if not vectors:
        return
    ids = vocab.ids(vectors)
    matrix = np.stack(list(vectors.values()))
    matrix = matrix / (matrix.std() + 1e-8) * float(embedding.weight.detach().std())
    with torch.no_grad():
        embedding.weight[torch.tensor(ids)] = torch.tensor(matrix, dtype=embedding.weight.dtype)
