"""Models souk runs: the bi-encoder (and later cross-encoders), loaded from installed packages only."""
from souk.models.encoder import (BACKENDS, MODELS, Encoder, EncoderConfig, choose_backend, detect_machine,
                                 encode_resumable, get_encoder)

__all__ = ["BACKENDS", "MODELS", "Encoder", "EncoderConfig", "choose_backend", "detect_machine", "encode_resumable", "get_encoder"]
