"""Models souk runs: bi-encoders (text -> vector) and cross-encoders (pair -> score).

Models are registered names (packaged, e.g. all-MiniLM-L6-v2) or model directories with an optional
`manifest.json`; both load the same way. Nothing here is downloaded from a hub, and nothing
heavy (torch, transformers) is imported until a model is loaded.
"""
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from souk.models.backends import BACKENDS, choose_backend
    from souk.models.checkpoints import encode_resumable
    from souk.models.cross_encoder import CrossEncoder
    from souk.models.encoder import Encoder, EncoderConfig, TransformerEncoder, get_encoder, load_encoder
    from souk.models.machine import detect_machine
    from souk.models.registry import (MODEL_MANIFEST, ModelCard, model_card, model_names, register_model, text_coverage,
                                      write_model_manifest)

__all__ = ["BACKENDS", "MODEL_MANIFEST", "CrossEncoder", "Encoder", "EncoderConfig", "ModelCard",
           "TransformerEncoder", "choose_backend", "detect_machine", "encode_resumable", "get_encoder",
           "load_encoder", "model_card", "model_names", "register_model", "text_coverage", "write_model_manifest"]

# imported on first use: `souk.models.store` (a keyword search checking activations) loads no encoder code
_LAZY = {name: module for module, names in {
    "souk.models.backends": ("BACKENDS", "choose_backend"), "souk.models.checkpoints": ("encode_resumable",),
    "souk.models.cross_encoder": ("CrossEncoder",),
    "souk.models.encoder": ("Encoder", "EncoderConfig", "TransformerEncoder", "get_encoder", "load_encoder"),
    "souk.models.machine": ("detect_machine",),
    "souk.models.registry": ("MODEL_MANIFEST", "ModelCard", "model_card", "model_names", "register_model",
                             "text_coverage", "write_model_manifest"),
}.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'souk.models' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
