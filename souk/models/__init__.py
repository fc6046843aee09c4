"""Models souk runs: bi-encoders (text -> vector) and cross-encoders (pair -> score).

Models are registered names (packaged, e.g. all-MiniLM-L6-v2) or model directories with an optional
`manifest.json`; both load the same way. Nothing here is downloaded from a hub, and nothing
heavy (torch, transformers) is imported until a model is loaded.
"""
from typing import TYPE_CHECKING

from souk.plugins import lazy_exports

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
__getattr__ = lazy_exports("souk.models", globals(), {
    "souk.models.backends": ("BACKENDS", "choose_backend"), "souk.models.checkpoints": ("encode_resumable",),
    "souk.models.cross_encoder": ("CrossEncoder",),
    "souk.models.encoder": ("Encoder", "EncoderConfig", "TransformerEncoder", "get_encoder", "load_encoder"),
    "souk.models.machine": ("detect_machine",),
    "souk.models.registry": ("MODEL_MANIFEST", "ModelCard", "model_card", "model_names", "register_model",
                             "text_coverage", "write_model_manifest"),
})
