"""The trained entity tagger: loads a model directory and finds entities in query text.

A model directory holds `model.pt` (the network's state dict; an ensemble of `members` networks
trained from different seeds when the manifest says so), `manifest.json` (kind
"ner-tagger", tags, network sizes, features, seed, training data and dev metrics) and the vocabularies
`chars.json` and `bigrams.json`, and the entity lexicon `lexicon.json`. torch is imported only when a tagger is loaded.
Misuse: feeding
the network units normalized another way than `data.unit`/`text.char_key` (training and tagging
share them).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from souk.errors import ModelError, ModelUnavailable
from souk.models.store import read_model_manifest, seal
from souk.query.entities.entity import Entity, bio_spans
from souk.query.entities.features import Featurizer, Lexicon, Vocab
from souk.query.entities.text import canonical, normalize_with_offsets

if TYPE_CHECKING:
    from souk.query.entities.network import BiLstmCrf, Ensemble

KIND = "ner-tagger"
FORMAT = 1
MANIFEST = "manifest.json"
WEIGHTS = "model.pt"
CHARS, BIGRAMS, LEXICON = "chars.json", "bigrams.json", "lexicon.json"


class Tagger:
    """A BiLSTM-CRF tagger with its vocabularies and tag set; `tag(text)` finds entities."""

    def __init__(self, network: "BiLstmCrf | Ensemble", features: Featurizer, tags: Sequence[str],
                 manifest: dict[str, Any] | None = None):
        self.network = network.eval()
        self.features = features
        self.tags = list(tags)
        self.manifest = manifest or {}

    @property
    def types(self) -> list[str]:
        return sorted({t[2:] for t in self.tags if t != "O"})

    # ---- tagging -----------------------------------------------------------------------------
    def predict(self, sentences: Sequence[Sequence[str]], batch_size: int = 256) -> list[list[str]]:
        """BIO tags of sentences already split into units (`data.unit` characters)."""
        return [tags for tags, _ in self._predict(sentences, batch_size, scores=False)]

    def _predict(self, sentences: Sequence[Sequence[str]], batch_size: int = 256,
                 scores: bool = True) -> list[tuple[list[str], list[float]]]:
        import torch

        from souk.query.entities.network import Batch

        out: list[tuple[list[str], list[float]]] = [([], []) for _ in sentences]
        order = sorted((i for i, s in enumerate(sentences) if s), key=lambda i: len(sentences[i]))
        with torch.no_grad():
            for lo in range(0, len(order), batch_size):
                idx = order[lo: lo + batch_size]
                batch = Batch.of([self.features.encode(sentences[i]) for i in idx])
                paths, probs = self.network.decode(batch, scores)
                for i, path, p in zip(idx, paths, probs):
                    out[i] = ([self.tags[t] for t in path], p)
        return out

    def tag(self, text: str) -> list[Entity]:
        """Entities in one query or title, with spans into `text`."""
        return self.tag_many([text])[0]

    def tag_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        """Entities of each text (batched through the network)."""
        prepared = []
        for text in texts:
            norm, offsets = normalize_with_offsets(text)
            keep = [i for i, c in enumerate(norm) if not c.isspace()]
            prepared.append(([norm[i] for i in keep], [offsets[i] for i in keep]))
        results = self._predict([units for units, _ in prepared])
        entities = []
        for text, (_, origin), (tags, probs) in zip(texts, prepared, results):
            found = []
            for kind, s, e in bio_spans(tags):
                start, end = origin[s], origin[e - 1] + 1
                surface = text[start:end]
                score = sum(probs[s:e]) / (e - s)
                found.append(Entity(type=kind, text=surface, value=canonical(surface), start=start, end=end,
                                    source="tagger", score=round(score, 4)))
            entities.append(found)
        return entities

    # ---- save / load -------------------------------------------------------------------------
    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the model directory atomically: a temp directory beside it, then a rename (an
        existing tagger directory is replaced; any other non-empty directory is refused)."""
        import torch

        path = Path(path)
        if path.exists() and not _is_tagger_dir(path) and (not path.is_dir() or any(path.iterdir())):
            raise ModelError(f"{path} exists and is not a souk ner-tagger directory; choose a new or empty directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        f = self.features
        manifest = {**self.manifest, **(extra or {}), "kind": KIND, "format": FORMAT, "tags": self.tags,
                    "network": self.network.config.to_dict(),
                    "members": len(getattr(self.network, "members", [self.network])), "segments": "jieba" if f.segments
                    else None,
                    "vocab": {"chars": {"file": CHARS, "size": len(f.chars)},
                              "bigrams": {"file": BIGRAMS, "size": len(f.bigrams)}},
                    "lexicon": {"file": LEXICON, "words": {t: len(w) for t, w in f.lexicon.words.items()}}
                    if f.lexicon is not None else None}
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        try:
            tmp.chmod(0o755)  # mkdtemp makes it private; a model directory is shared like any other
            torch.save(self.network.state_dict(), tmp / WEIGHTS)
            (tmp / CHARS).write_text(json.dumps(f.chars.tokens, ensure_ascii=False), encoding="utf-8")
            (tmp / BIGRAMS).write_text(json.dumps(f.bigrams.tokens, ensure_ascii=False), encoding="utf-8")
            if f.lexicon is not None:
                (tmp / LEXICON).write_text(json.dumps(f.lexicon.words, ensure_ascii=False), encoding="utf-8")
            manifest = seal(tmp, manifest)  # the manifest with the files' sha256, checked before torch reads them
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.manifest = manifest
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Tagger":
        """Load a model directory written by `save`; ModelError for anything else."""
        import torch

        from souk.query.entities.network import BiLstmCrf, Ensemble, NetworkConfig

        path = Path(path)
        manifest = read_model_manifest(path, KIND, format=FORMAT)
        try:
            chars = Vocab(json.loads((path / CHARS).read_text(encoding="utf-8")))
            bigrams = Vocab(json.loads((path / BIGRAMS).read_text(encoding="utf-8")))
            lexicon = (
                Lexicon(json.loads((path / LEXICON).read_text(encoding="utf-8"))) if manifest.get("lexicon") else None
            )

            def member() -> BiLstmCrf:
                return BiLstmCrf(NetworkConfig(**manifest["network"]), len(chars), len(bigrams), manifest["tags"])

            members = int(manifest.get("members", 1))
            network = member() if members == 1 else Ensemble([member() for _ in range(members)])
            network.load_state_dict(torch.load(path / WEIGHTS, map_location="cpu", weights_only=True))
        except Exception as e:  # torch's unpickler refusing a pickle, a shape that does not fit, a bad vocabulary
            raise ModelUnavailable(f"model {path.name}: damaged ner-tagger directory ({type(e).__name__}); "
                                   "retrain it") from None
        features = Featurizer(chars, bigrams, bool(manifest.get("segments")), lexicon)
        return cls(network, features, manifest["tags"], manifest)


def _is_tagger_dir(path: Path) -> bool:
    try:
        return read_model_manifest(path, verify=False).get("kind") == KIND
    except ModelError:
        return False

