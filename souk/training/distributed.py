"""Data-parallel fitting on Ray Train: the one training loop (`souk.training.loop.train`) run in each
worker of a `ray.train.torch.TorchTrainer`, the model wrapped in DDP (gloo on CPU), each worker reading
its shard of every phase's batches.

`fit_on_ray(name, job, workers)` runs fitter `name` in `workers` Ray Train workers (fractional CPUs,
`WORKER_CPUS` each); inside them `replica()` tells the fitter its rank and world size and gives it the
pieces it needs: `wrap(net)` (DDP), `shard(phase)` (item i of every batch goes to worker i mod world: the
single process's global batch and step count), `from_rank0(evaluate)` (only rank 0 measures the dev metric, every worker
gets its value)
and `agree(code)` for the loop's clock decisions (deadline, time shares, when to evaluate), all rank 0's
and broadcast, so the replicas take the same steps and the same early stop. Seeds, options and the
manifest are the single-process fit's; rank 0 alone saves the model into `job.workdir` and reports the
manifest (a file in the model directory, taken by the driver). The deadline travels as wall-clock time (the workers may
be on other machines); the model
directory must be reachable from rank 0 (the same machine for a local cluster, shared storage otherwise).

ray is imported only here, lazily: `pip install 'souk[ray]'`.
In-batch negatives are each replica's own (1/world of the batch's); the hard and random negatives
travel with their query. Misuse: a fitter whose batch items depend on each other's position.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from souk.errors import ConfigError

EXTRA = "pip install 'souk[ray]'"
WORKER_CPUS = 0.5   # per training worker: fractional, so two workers fit a 1-2 core machine
WORKERS = 2
REPORT = ".rank0-manifest.json"  # rank 0's manifest, in the model directory until the driver publishes it


@dataclass(frozen=True)
class Replica:
    """This process's place in a data-parallel fit."""

    rank: int
    world: int

    def wrap(self, net: Any) -> Any:
        """`net` in DDP (gradients averaged over the replicas at each backward)."""
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(net, broadcast_buffers=False)

    def shard(self, phase: Any) -> Any:
        """The phase with this replica's share of every batch (items rank, rank + world, ...; equal counts on
        every replica): the global batch, the step count and the learning-rate schedule stay the single
        process's, each replica computes 1/world of each step."""

        def batches(epoch: int):
            for batch in phase.batches(epoch):
                items = list(batch)
                if len(items) >= self.world:  # a batch smaller than the world is skipped by every replica
                    yield items[self.rank:len(items) - len(items) % self.world:self.world]

        return replace(phase, batches=batches)

    def agree(self, code: int) -> int:
        """Rank 0's `code`, on every replica."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([code], dtype=torch.int64)
        dist.broadcast(t, src=0)
        return int(t.item())

    def from_rank0(self, evaluate: Callable[[], float]) -> Callable[[], float]:
        """`evaluate` run on rank 0 only; its value broadcast to every replica."""
        import torch
        import torch.distributed as dist

        def measured() -> float:
            t = torch.tensor([float(evaluate()) if self.rank == 0 else 0.0], dtype=torch.float64)
            dist.broadcast(t, src=0)
            return float(t.item())

        return measured


_REPLICA: Replica | None = None


def replica() -> Replica | None:
    """This process's replica inside a Ray Train fit; None in a single-process fit."""
    return _REPLICA


def _ray():
    try:
        import ray
        import ray.train.torch  # noqa: F401
    except ImportError:
        raise ConfigError(f"--ray needs the ray extra: {EXTRA}") from None
    return ray


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the fitter under DDP; rank 0 reports the manifest."""
    global _REPLICA
    import ray.train
    import torch

    from souk.training.fit import _FITTERS, load_builtin_fitters

    ctx = ray.train.get_context()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("SOUK_TORCH_THREADS", str(max(1, cores // ctx.get_world_size())))
    torch.set_num_threads(int(os.environ["SOUK_TORCH_THREADS"]))
    _REPLICA = Replica(ctx.get_world_rank(), ctx.get_world_size())
    job = replace(config["job"], deadline=time.monotonic() + config["wall_deadline"] - time.time(),
                  progress=config["job"].progress and _REPLICA.rank == 0)
    load_builtin_fitters()
    try:
        manifest = _FITTERS[config["name"]].fitter(job)
    finally:
        _REPLICA = None
    if ctx.get_world_rank() == 0:  # next to the model it describes; the driver takes it from there
        (job.workdir / REPORT).write_text(json.dumps(manifest))


def fit_on_ray(name: str, job: Any, workers: int = WORKERS) -> dict[str, Any]:
    """Run fitter `name` on `job` in `workers` Ray Train workers (Ray already initialized: see
    `souk.index.vectors.ray_encoding.ray_cluster`); returns rank 0's manifest (plus how it ran)."""
    ray = _ray()
    if not ray.is_initialized():
        raise ConfigError("fit on Ray: no Ray cluster in this process; use --ray auto or --ray ADDRESS")
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    with tempfile.TemporaryDirectory(prefix="souk-ray-train-") as storage:
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"name": name, "job": replace(job, device="cpu"), "wall_deadline": time.time()
                               + job.seconds_left},
            torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": WORKER_CPUS}),
            run_config=RunConfig(name=f"souk-fit-{name}", storage_path=storage))
        try:
            trainer.fit()
        except Exception as e:
            cause: BaseException = e
            while cause.__cause__ is not None:
                cause = cause.__cause__
            if isinstance(cause, ConfigError):
                raise cause from None
            raise ConfigError(
                f"fit {name} on Ray failed ({type(cause).__name__}: {str(cause).strip()[-400:]})"
            ) from None
    report = job.workdir / REPORT
    if not report.is_file():
        raise ConfigError(f"fit {name} on Ray: rank 0 wrote no model; the model directory must be on storage "
                          "that rank 0's machine reaches (the same machine for --ray auto)")
    manifest = json.loads(report.read_text())
    report.unlink()
    return {**manifest, "device": "cpu", "distributed": {"engine": "ray-train", "workers": workers, "backend": "gloo",
                                                "cpus_per_worker": WORKER_CPUS}}
