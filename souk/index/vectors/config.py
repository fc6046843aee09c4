"""The params of a `vector` field: completed with defaults, checked, and pinned when an index is created.

The schema only checks what it can see (params is a table; `source` names its fields). Everything else
is checked here when an index is created (`Index.create` calls `validate_params`, before writing
anything): the core keys (`VectorParams`) and the keys of the field's backend (its `Params` dataclass, e.g.
FAISS's `ef_search`/`nprobe`, Milvus's `uri`/`collection`) are read by `parse_options`; with the default
encoder the model is looked up in the model registry (a registered name, or a model directory whose path is
pinned absolute; one inside the index directory, a fitted model, relative to it: `pin_model`) and the dimension
read from it; another encoder (`encoder = "NAME"`, see
`encoding.ENCODERS`) takes `model` as written and needs `dim`. The completed params are stored in the
manifest under `vectors`, so later defaults never change an existing index.

Misuse to avoid: reading `field.params` for behaviour; it is what the user wrote. Use `field_params`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from souk.errors import ConfigError, SoukError
from souk.index.vectors.backend import VECTOR_BACKENDS, backend_param_names
from souk.index.vectors.encoding import DEFAULT_ENCODER, ENCODERS
from souk.plugins import option_check, parse_options


def _in(lo: int, hi: int) -> dict[str, Any]:
    return option_check(lambda v: lo <= v <= hi, f"an integer in {lo}..{hi}")


def _path_choice(v: str) -> bool:
    from souk.models.backends import BACKENDS

    return v in ("auto", "exact", *BACKENDS)


_PATHS = option_check(_path_choice, "auto, exact or an encoder path (souk.models.backends.BACKENDS)")


@dataclass
class VectorParams:
    """The core keys of a vector field's params (its backend adds its own)."""

    model: str = field(default="all-MiniLM-L6-v2", metadata=option_check(bool, "a model name or directory"))
    source: list[str] = field(default_factory=list)
    index: str = field(default="flat", metadata=option_check(lambda v: v in VECTOR_BACKENDS,
                                                             "a vector backend (flat, hnsw, ivfpq, sq8, milvus...)"))
    encoder: str = field(default=DEFAULT_ENCODER, metadata=option_check(lambda v: v in ENCODERS,
                                                                         "a registered encoder"))
    normalize: bool = True
    max_length: int = field(default=256, metadata=_in(8, 512))
    transform: str = "none"
    backend: str = field(default="auto", metadata=_PATHS)
    query_backend: str = field(default="exact", metadata=_PATHS)
    batch_size: int = field(default=32, metadata=_in(1, 4096))
    dim: int | None = field(default=None, metadata=option_check(lambda v: v is None or v > 0, "a positive integer"))


DEFAULTS: dict[str, Any] = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                            for f in dataclasses.fields(VectorParams) if f.name != "dim"}
CORE_KEYS = frozenset(f.name for f in dataclasses.fields(VectorParams))


def core_params(params: dict[str, Any]) -> dict[str, Any]:
    """`params` without its backend's own keys (what moving a field to another backend keeps)."""
    return {k: v for k, v in params.items() if k in CORE_KEYS}


def validate_params(field) -> dict[str, Any]:
    """Complete and check a vector field's params (idempotent); errors name the key."""
    from souk.models.registry import model_card

    where = f"fields.{field.name}.params"
    raw = dict(field.params or {})
    own = backend_param_names(raw.get("index", DEFAULTS["index"]))
    unknown = sorted(set(raw) - CORE_KEYS - own)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(CORE_KEYS | own))}")
    core = parse_options(where, {k: v for k, v in raw.items() if k in CORE_KEYS}, VectorParams)
    backend = VECTOR_BACKENDS.get(core.index)
    extra = getattr(backend, "Params", None)
    params = dataclasses.asdict(core)
    if extra is not None:
        params.update(dataclasses.asdict(parse_options(where, {k: v for k, v in raw.items() if k in own}, extra)))

    def check(key: str, ok: bool, expected: str) -> None:
        if not ok:
            raise ConfigError(f"{where}.{key}: expected {expected}, got {params[key]!r}")

    if core.encoder == DEFAULT_ENCODER:
        try:
            card = model_card(core.model)
        except SoukError as e:
            raise ConfigError(f"{where}.model: {e}") from e
        check("model", card.kind == "bi-encoder", f"a bi-encoder ({core.model} is a {card.kind})")
        params["model"] = card.name  # a directory is pinned as its absolute path
        check("dim", core.dim in (None, card.dim), f"{card.dim} (the dimension of {core.model})")
        params["dim"] = card.dim
    else:
        check("dim", core.dim is not None, f"the dimension of encoder {core.encoder}'s vectors")
    dim = params["dim"]
    t = params["transform"]
    ok = t in ("none", "whiten") or (t.startswith("pca:") and t[4:].isdigit() and 0 < int(t[4:]) <= dim)
    check("transform", ok, f'"none", "whiten" or "pca:N" with N in 1..{dim}')
    checker = getattr(backend, "check_params", None)
    return checker(params, where) if checker is not None else params


def field_params(index, field) -> dict[str, Any]:
    """The completed params of vector field `field` in `index`: as pinned in its manifest at creation
    (indexes made before pinning completed them in the schema itself), a model kept inside the index
    directory given as its absolute path where the index is now (`pin_model`)."""
    pinned = index.manifest.get("vectors", {}).get(field.name)
    if pinned is None:
        return validate_params(field)
    return {**pinned, "model": _unpinned(Path(index.path), field.name, pinned)}


def pin_model(index_path: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """`params` as the manifest keeps them: a model directory inside the index (a fitted bi-encoder under
    `models/`) as a path relative to the index directory, so that a moved or copied index reads its own
    model, never the one where it was fitted; any other model as it is. `Writer.commit` pins the `vectors` it
    writes. Misuse: writing `field_params`' output into the manifest another way (the index then breaks when moved)."""
    model = params.get("model")
    if params.get("encoder", DEFAULT_ENCODER) != DEFAULT_ENCODER or not isinstance(model, str):
        return dict(params)
    path = Path(model)
    if not path.is_absolute():
        return dict(params)
    try:
        inside = path.resolve().relative_to(Path(index_path).resolve())
    except (ValueError, OSError, RuntimeError):
        return dict(params)
    return {**params, "model": inside.as_posix()}


def _unpinned(index_path: Path, field_name: str, params: dict[str, Any]) -> Any:
    """The model of pinned `params` to load: a path relative to the index (`pin_model`) made absolute; it must
    stay inside the index (the manifest is untrusted input). A model that an index pinned absolute inside its
    own `models/` before relative pins, and that is gone because the index was moved, is found in the index's
    own `models/` under its name (the next re-encode pins it relative)."""
    from souk.models.registry import MODELS
    from souk.models.store import MODELS_DIR

    model = params.get("model")
    if params.get("encoder", DEFAULT_ENCODER) != DEFAULT_ENCODER or not isinstance(model, str) or model in MODELS:
        return model
    path = Path(model)
    try:
        root = index_path.resolve()
        if path.is_absolute():
            moved = root / MODELS_DIR / path.name
            if (not path.exists() and path.parent.name == MODELS_DIR and path.name not in ("", ".", "..")
                    and moved.is_dir()):
                return str(moved)
            return model
        resolved = (root / path).resolve()
    except (ValueError, OSError, RuntimeError):  # a NUL byte, a symlink loop
        resolved = None
    if resolved is None or not resolved.is_relative_to(root):
        raise ConfigError(f"vector field {field_name!r}: its model path in the index manifest is not a place "
                          "inside the index directory; re-create the index or fit the model again")
    return str(resolved)


def mirrors_for(index) -> list:
    """What the writer must keep in step at each commit: one mirror per vector field whose backend lives
    outside the index (a backend class with a `mirror(index, field, params)` factory, e.g. Milvus)."""
    out = []
    for vf in index.schema.vector_fields:
        params = field_params(index, vf)
        factory = getattr(VECTOR_BACKENDS.get(params["index"]), "mirror", None)
        if factory is not None:
            out.append(factory(index, vf, params))
    return out
