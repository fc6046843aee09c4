"""The params of a `vector` field: completed with defaults, checked, and pinned when an index is created.

The schema only checks what it can see (params is a table; `source` names its fields). Everything else
is checked here when an index is created (`Index.create` calls `validate_params`, before writing
anything): the model is looked up in the model registry (a registered name, or a model directory whose
path is pinned absolute), the dimension read from it, and the completed params stored in the manifest
under `vectors`, so later defaults never change an existing index.

Misuse to avoid: reading `field.params` for behaviour; it is what the user wrote. Use `field_params`.
"""
from __future__ import annotations

from typing import Any

from souk.errors import ConfigError, SoukError
from souk.index.vectors.backend import backend_params, vector_backend, vector_backend_names

DEFAULTS: dict[str, Any] = {
    "model": "all-MiniLM-L6-v2", "source": [], "index": "flat", "normalize": True, "max_length": 256,
    "transform": "none", "backend": "auto", "query_backend": "exact", "batch_size": 32, "ef_search": 64, "nprobe": 16,
}


def validate_params(field) -> dict[str, Any]:
    """Complete and check a vector field's params (idempotent); errors name the key."""
    from souk.models.backends import BACKENDS
    from souk.models.registry import model_card

    where = f"fields.{field.name}.params"
    params = dict(field.params or {})
    own = backend_params(params["index"]) if isinstance(params.get("index"), str) else {}
    unknown = set(params) - set(DEFAULTS) - {"dim"} - set(own)
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: "
                          f"{', '.join(sorted([*DEFAULTS, *own, 'dim']))}")
    params = {**DEFAULTS, **own, **params}

    def check(key: str, ok: bool, expected: str) -> None:
        if not ok:
            raise ConfigError(f"{where}.{key}: expected {expected}, got {params[key]!r}")

    check("model", isinstance(params["model"], str) and params["model"] != "", "a model name or directory")
    try:
        card = model_card(params["model"])
    except SoukError as e:
        raise ConfigError(f"{where}.model: {e}") from e
    check("model", card.kind == "bi-encoder", f"a bi-encoder ({params['model']} is a {card.kind})")
    params["model"] = card.name  # a directory is pinned as its absolute path
    check("source", isinstance(params["source"], list) and all(isinstance(s, str) for s in params["source"]),
          "a list of field names")
    check("index", params["index"] in vector_backend_names(), "one of " + ", ".join(vector_backend_names()))
    check("normalize", isinstance(params["normalize"], bool), "true or false")
    for key in ("backend", "query_backend"):
        check(key, params[key] in ("auto", "exact", *BACKENDS), "one of auto, exact, " + ", ".join(BACKENDS))
    for key, lo, hi in (("max_length", 8, 512), ("batch_size", 1, 4096), ("ef_search", 1, 100_000),
                        ("nprobe", 1, 100_000)):
        check(key, type(params[key]) is int and lo <= params[key] <= hi, f"an integer in {lo}..{hi}")
    dim = card.dim
    check("dim", params.get("dim", dim) == dim, f"{dim} (the dimension of {params['model']})")
    params["dim"] = dim
    t = params["transform"]
    ok = t in ("none", "whiten") or (isinstance(t, str) and t.startswith("pca:") and t[4:].isdigit()
                                     and 0 < int(t[4:]) <= dim)
    check("transform", ok, f'"none", "whiten" or "pca:N" with N in 1..{dim}')
    checker = getattr(vector_backend(params["index"]), "check_params", None)
    return checker(params, where) if checker is not None else params


def field_params(index, field) -> dict[str, Any]:
    """The completed params of vector field `field` in `index`: as pinned in its manifest at creation
    (indexes made before pinning completed them in the schema itself)."""
    pinned = index.manifest.get("vectors", {}).get(field.name)
    return dict(pinned) if pinned is not None else validate_params(field)


def mirrors_for(index) -> list:
    """What the writer must keep in step at each commit: one mirror per vector field whose backend lives
    outside the index (a backend class with a `mirror(index, field, params)` factory, e.g. Milvus)."""
    out = []
    for vf in index.schema.vector_fields:
        params = field_params(index, vf)
        factory = getattr(vector_backend(params["index"]), "mirror", None)
        if factory is not None:
            out.append(factory(index, vf, params))
    return out
