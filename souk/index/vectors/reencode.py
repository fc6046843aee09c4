"""Re-encode every document of an index with another bi-encoder (e.g. one `souk fit` fine-tuned), in one commit.

The documents are written again from their stored values with the vector field's model switched; the
tantivy commit and the manifest's new `vectors` params are published together, so searches see either
the old vectors with the old model or the new vectors with the new one. Misuse: re-encoding an index
whose fields are not all stored (their terms would be lost); it is refused.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable

from souk.errors import ConfigError, SoukError


def reencode(index_path: str | Path, model: str, field: str | None = None,
             progress: Callable[[int], None] | None = None, batch: int = 512, ray: str | None = None) -> dict[str, Any]:
    """Switch vector field `field` (default: the only one) of the index to bi-encoder `model`, re-encoding
    every document; returns what changed. `ray` (default: the `SOUK_RAY` environment variable, so a fit's
    activation can use it too): `auto` or a cluster address encodes in a Ray actor pool, this process
    still the only writer."""
    from souk.index import Index
    from souk.index.vectors.config import field_params
    from souk.models.registry import model_card

    index = Index.open(index_path)
    fields = index.schema.vector_fields
    chosen = [f for f in fields if field is None or f.name == field]
    if not chosen or (field is None and len(fields) > 1):
        names = ", ".join(f.name for f in fields) or "none"
        raise ConfigError(f"{index.path}: name the vector field to re-encode (vector fields: {names})"
                          if fields else f"{index.path} has no vector field; index with --vectors first")
    vf = chosen[0]
    lost = [f.name for f in index.schema.fields.values() if not f.stored and not f.copy_from and f.kind != "vector"]
    if lost:
        raise ConfigError(f"{index.path}: fields {', '.join(lost)} are not stored, so documents cannot be written "
                          "again; reindex from the catalog with the new model instead")
    try:
        card = model_card(model)
    except SoukError as e:
        raise ConfigError(f"re-encode: {e}") from e
    old = field_params(index, vf)
    if card.kind != "bi-encoder" or card.dim != old["dim"]:
        raise ConfigError(f"re-encode: {model} is a {card.kind} of dimension {card.dim}; the field needs a "
                          f"bi-encoder of dimension {old['dim']}")
    params = {**old, "model": card.name}
    index.manifest.setdefault("vectors", {})[vf.name] = params  # the writer encodes with these
    searcher = index.searcher()
    ids = searcher.ids()
    address = ray if ray is not None else os.environ.get("SOUK_RAY") or None
    with contextlib.ExitStack() as stack:
        pre = None
        if address:
            from souk.index.vectors.ray_encoding import CHUNK, RayEncoding, ray_cluster

            stack.enter_context(ray_cluster(address))
            pre, batch = stack.enter_context(RayEncoding(index)), max(batch, CHUNK)
        with index.writer() as writer:
            for start in range(0, len(ids), batch):
                docs = [d for d in searcher.docs(ids[start:start + batch]) if d is not None]
                with pre.documents(docs) if pre is not None else contextlib.nullcontext():
                    writer.rewrite(docs)
                if progress:
                    progress(len(docs))
            writer.commit(vectors=index.manifest["vectors"])
    return {"field": vf.name, "model": card.name, "previous_model": old["model"], "docs": len(ids)}
