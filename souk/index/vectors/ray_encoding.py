"""Document encoding on a Ray cluster: the encoder runs in a Ray Data actor pool, the caller stays the
single index writer.

`ray_cluster("auto")` starts a local cluster for the block and stops it after; any other address joins an
existing cluster (left running). `RayEncoding(index)` then encodes each chunk of records (or stored
documents, for a re-encode) in one Ray Data pipeline: `map_batches` over a pool of actors that each load
souk's encoder once (the backend resolved by the driver, so every actor computes the same vectors as a
local run), with fractional CPUs (`ACTOR_CPUS`) so the read tasks always find a CPU. The vectors come back
to the driver and are handed to the writer through `encoding.precomputed_vectors`: the writer validates,
writes and commits exactly as without Ray, so a failure anywhere leaves the last commit intact and a re-run
starts over from it.

ray is imported only here, lazily: `pip install 'souk[ray]'`.
Misuse to avoid: a chunk larger than the driver's memory holds as vectors (`CHUNK` records at a time).
"""
from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import replace
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from souk.errors import ConfigError
from souk.index.vectors.encoding import document_texts, encoder_config, model_record, precomputed_vectors

EXTRA = "pip install 'souk[ray]'"
ACTOR_CPUS = 0.5    # per encoder actor: half a CPU, so a read task can always be scheduled beside them
CHUNK = 50_000      # records encoded per pipeline (vectors held by the driver until the writer takes them)


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(f"--ray needs the ray extra: {EXTRA}") from None
    return ray


@contextlib.contextmanager
def ray_cluster(address: str | None, num_cpus: int | None = None,
                object_store_memory: int | None = None) -> Iterator[Any]:
    """Ray for the block: None does nothing; `auto` starts a local cluster (stopped after); an address joins
    that cluster. A Ray already initialized in this process (a test's cluster) is used as it is."""
    if not address:
        yield None
        return
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    env = {"PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""),) if p)}
    runtime_env = {"env_vars": env} if env["PYTHONPATH"] else None
    try:
        if address == "auto":
            ray.init(num_cpus=num_cpus, object_store_memory=object_store_memory, include_dashboard=False,
                     log_to_driver=False, runtime_env=runtime_env, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, runtime_env=runtime_env, configure_logging=False)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"--ray {address}: cannot start or join the Ray cluster ({type(e).__name__}: "
                          f"{str(e)[:200]}); use --ray auto for a local one") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _quiet(ray) -> None:
    """No Ray Data progress bars or per-second execution logs on the driver's stderr (souk reports progress)."""
    import logging

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


class _EncodeBatch:
    """One actor of the pool: loads the encoder once, then encodes the text batches it is given."""

    def __init__(self, params: dict[str, Any], backend: str, threads: int):
        import torch

        from souk.models.encoder import get_encoder

        torch.set_num_threads(max(1, threads))
        self.encoder = get_encoder(replace(encoder_config(params), backend=backend))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        return {"row": batch["row"], "vector": np.asarray(self.encoder.encode(texts), dtype=np.float32)}


def encode_on_ray(params: dict[str, Any], texts: Sequence[str], actors: int | None = None) -> np.ndarray:
    """(len(texts), dim) float32 document vectors computed by a Ray Data actor pool (Ray must be initialized)."""
    ray = _ray()
    if not ray.is_initialized():
        raise ConfigError("encode_on_ray needs a running Ray (use ray_cluster)")
    out = np.zeros((len(texts), params["dim"]), dtype=np.float32)
    if not len(texts):
        return out
    _quiet(ray)
    backend = model_record(params)["backend"]  # resolved once here: every actor computes the same vectors
    cpus = float(ray.cluster_resources().get("CPU", 1))
    n = actors or max(1, min(int(cpus), 1 + len(texts) // max(1, params["batch_size"])))
    ds = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)])
    encoded = ds.map_batches(_EncodeBatch, fn_constructor_kwargs={"params": params, "backend": backend, "threads": 1},
                             batch_size=params["batch_size"] * 4, concurrency=n, num_cpus=ACTOR_CPUS,
                             batch_format="numpy")
    for batch in encoded.iter_batches(batch_format="numpy", batch_size=None):
        out[np.asarray(batch["row"], dtype=np.int64)] = batch["vector"]
    return out


class RayEncoding:
    """Pre-encodes what a writer is about to write, chunk by chunk, on Ray; the writer then finds the
    vectors ready (`precomputed_vectors`) instead of running the encoder itself."""

    def __init__(self, index, actors: int | None = None, chunk: int = CHUNK):
        from souk.index.vectors.config import field_params

        self.index = index
        self.actors = actors
        self.chunk = chunk
        self.fields = [(vf, field_params(index, vf)) for vf in index.schema.vector_fields]
        self.encoded = 0
        self._held: list[contextlib.ExitStack] = []  # the vectors of the last chunks, until the writer took them

    def close(self) -> None:
        """Forget every precomputed vector (call when the writer is done)."""
        while self._held:
            self._held.pop().close()

    def __enter__(self) -> "RayEncoding":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def records(self, records: Iterable[Any]) -> Iterator[Any]:
        """The same records, each chunk's vectors computed on Ray before the writer reads its records."""
        it = iter(records)
        while part := list(itertools.islice(it, self.chunk)):
            values = []
            for rec in part:
                if rec.error is None:
                    v, problems = self.index.schema.extract(rec.data or {})
                    if not problems:
                        values.append(v)
            held = contextlib.ExitStack()
            held.enter_context(self._ready(values))
            self._held.append(held)
            while len(self._held) > 2:  # the writer's pending batch may still hold records of the chunk before
                self._held.pop(0).close()
            yield from part

    def documents(self, docs: Sequence[dict]) -> contextlib.AbstractContextManager:
        """A block in which the vectors of these stored documents (`Searcher.docs`) are ready."""
        return self._ready([d for d in docs if d is not None])

    @contextlib.contextmanager
    def _ready(self, values: list[dict]) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for vf, params in self.fields:
                texts = document_texts(self.index.schema, params, values)
                unique = list(dict.fromkeys(texts))
                stack.enter_context(precomputed_vectors(params, unique, encode_on_ray(params, unique, self.actors)))
                self.encoded += len(unique)
            yield
