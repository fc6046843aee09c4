"""Data-parallel fitting on Ray Train: the one training loop (`souk.training.loop.train`) run in each worker of a
`ray.train.torch.TorchTrainer`, the model wrapped in DDP (gloo on CPU), each worker reading its shard of every
phase's batches.

`fit_on_ray(name, job, workers)` runs fitter `name` in `workers` Ray Train workers (fractional CPUs,
`WORKER_CPUS` each); inside them `replica()` tells the fitter its rank and world size and gives it the pieces
it needs: `wrap(net)` (DDP), `shard(phase)` (item i of every batch goes to worker i mod world: the single
process's global batch and step count), `from_rank0(evaluate)` (only rank 0 measures the dev metric, every
worker gets its value) and `agree(code)` for the loop's clock decisions (deadline, time shares, when to
evaluate), all rank 0's and broadcast, so the replicas take the same steps and the same early stop. Seeds,
options and the manifest are the single-process fit's; rank 0 alone saves the model into `job.workdir` and
reports the manifest (a file in the model directory, taken by the driver). The deadline travels as wall-clock
time (the workers may be on other machines); the model directory must be reachable from rank 0 (the same
machine for a local cluster, shared storage otherwise).

On a cluster with a GPU for every worker, each worker takes one (`placement`): DDP over NCCL, the fitter's
device `cuda`. `lightgbm_on_ray` runs LightGBM's own distributed mode (data-parallel trees, lambdarank groups
kept whole on one worker) in a `ray.train.lightgbm.LightGBMTrainer` for the `ltr` stage.

ray is imported only here, lazily: `pip install 'souk[ray]'`. In-batch negatives are each replica's own
(1/world of the batch's); the hard and random negatives travel with their query. Misuse: a fitter whose batch
items depend on each other's position.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from souk.errors import ConfigError

EXTRA = "pip install 'souk[ray]'"
WORKER_CPUS = 0.5   # per training worker: fractional, so two workers fit a 1-2 core machine
WORKERS = 2
REPORT = ".rank0-manifest.json"  # rank 0's manifest, in the model directory until the driver publishes it
BOOSTERS = ".rank0-boosters.json"  # rank 0's LightGBM models, in the model directory until the driver reads them
BUDGET_EVERY = 10   # LightGBM on Ray: rank 0's deadline check every this many rounds (a broadcast each)


@dataclass(frozen=True)
class Placement:
    """Where each Ray Train worker runs: its resources, the DDP backend and the fitter's device."""

    use_gpu: bool
    resources_per_worker: dict[str, float]
    backend: str
    device: str


def placement(resources: dict[str, float], workers: int) -> Placement:
    """Workers on a cluster with `resources` (`ray.cluster_resources()`): one GPU each (NCCL, `cuda`) when the
    cluster has a GPU for every worker, else `WORKER_CPUS` CPUs each (gloo, `cpu`). Misuse: asking for more
    workers than GPUs and expecting GPUs (two replicas cannot share one GPU under NCCL)."""
    if float(resources.get("GPU", 0)) >= max(workers, 1):
        return Placement(True, {"CPU": WORKER_CPUS, "GPU": 1.0}, "nccl", "cuda")
    return Placement(False, {"CPU": WORKER_CPUS}, "gloo", "cpu")


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

    from souk.training.fit import FITTERS

    ctx = ray.train.get_context()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("SOUK_TORCH_THREADS", str(max(1, cores // ctx.get_world_size())))
    torch.set_num_threads(int(os.environ["SOUK_TORCH_THREADS"]))
    if config["job"].device == "cuda":  # this worker's GPU becomes the current one: "cuda" tensors land on it
        import ray.train.torch

        torch.cuda.set_device(ray.train.torch.get_device())
    _REPLICA = Replica(ctx.get_world_rank(), ctx.get_world_size())
    job = replace(config["job"], deadline=time.monotonic() + config["wall_deadline"] - time.time(),
                  progress=config["job"].progress and _REPLICA.rank == 0)
    try:
        manifest = FITTERS.get(config["name"]).fitter(job)
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

    where = placement(ray.cluster_resources(), workers)
    with tempfile.TemporaryDirectory(prefix="souk-ray-train-") as storage:
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"name": name, "job": replace(job, device=where.device, workers=0),
                               "wall_deadline": time.time() + job.seconds_left},
            torch_config=TorchConfig(backend=where.backend),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=where.use_gpu,
                                         resources_per_worker=where.resources_per_worker),
            run_config=RunConfig(name=f"souk-fit-{name}", storage_path=storage))
        _run(trainer, f"fit {name}")
    report = job.workdir / REPORT
    if not report.is_file():
        raise ConfigError(f"fit {name} on Ray: rank 0 wrote no model; the model directory must be on storage "
                          "that rank 0's machine reaches (the same machine for --ray auto)")
    manifest = json.loads(report.read_text())
    report.unlink()
    return {**manifest, "device": where.device,
            "distributed": {"engine": "ray-train", "workers": workers, "backend": where.backend,
                            "cpus_per_worker": WORKER_CPUS, **({"gpus_per_worker": 1} if where.use_gpu else {})}}


def _run(trainer: Any, what: str) -> None:
    """`trainer.fit()`, a failure inside a worker raised as the ConfigError it was or one naming its cause."""
    try:
        trainer.fit()
    except Exception as e:
        cause: BaseException = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        if any(m in str(cause) for m in ("OutOfMemoryError", "low on memory", "worker_killing_policy")):
            raise ConfigError(f"{what} on Ray failed: Ray killed a worker because the machine ran short of memory; "
                              "free memory, or run with fewer --ray-workers or without --ray") from None
        raise ConfigError(f"{what} on Ray failed ({type(cause).__name__}: {str(cause).strip()[-400:]})") from None


@dataclass
class BoosterTask:
    """One LightGBM training for `lightgbm_on_ray`: train rows stacked by query (`groups` their sizes), an
    optional validation set (X, y, groups) every worker scores in full, and the rounds."""

    X: Any
    y: Any
    groups: Any
    valid: tuple[Any, Any, Any] | None
    rounds: int
    position: Any = None  # logged position per train row (labels from clicks; trained in one process, not on Ray)


def query_shards(groups: Any, workers: int) -> list[Any]:
    """Row indexes of each worker's share: whole query groups, dealt round-robin (a query's candidates stay
    on one worker, as lambdarank needs them together). Misuse: fewer queries than workers (a worker without
    rows); `lightgbm_on_ray` refuses that."""
    import numpy as np

    starts = np.concatenate([[0], np.cumsum(groups)[:-1]]).astype(np.int64)
    out = []
    for rank in range(workers):
        mine = range(rank, len(groups), workers)
        out.append(np.concatenate([np.arange(starts[q], starts[q] + groups[q]) for q in mine])
                   if len(mine) else np.zeros(0, np.int64))
    return out


def lightgbm_on_ray(tasks: list[BoosterTask], params: dict[str, Any], names: list[str], deadline: float | None,
                    workers: int, workdir: Any) -> list[tuple[Any, dict[str, Any], bool]]:
    """Train each task in turn with LightGBM's distributed mode over `workers` Ray Train workers (one worker
    group; `tree_learner=data`, each worker holding its `query_shards` of the rows and the whole validation
    set, so every worker's early stopping sees the same metric and stops at the same round). Returns
    (booster, evaluation history, stopped by the deadline) per task, up to and including the first the
    deadline cut. Rank 0 writes the models into `workdir` (reachable from rank 0: the same machine for a
    local cluster, shared storage otherwise); Ray must be initialized."""
    import lightgbm as lgb

    ray = _ray()
    if not ray.is_initialized():
        raise ConfigError("LightGBM on Ray: no Ray cluster in this process; use --ray auto or --ray ADDRESS")
    from ray.train import RunConfig, ScalingConfig
    from ray.train.lightgbm import LightGBMTrainer

    if any(len(t.groups) < workers for t in tasks):
        raise ConfigError(f"LightGBM on Ray: a training set has fewer queries than the {workers} workers")
    sent = [{"shards": [ray.put((t.X[rows], t.y[rows], t.groups[rank::workers]))
                        for rank, rows in enumerate(query_shards(t.groups, workers))],
             "valid": ray.put(t.valid) if t.valid is not None else None, "rounds": t.rounds} for t in tasks]
    out = Path(workdir) / BOOSTERS
    config = {"tasks": sent, "params": params, "names": names, "out": str(out),
              "addresses": ray.remote(num_cpus=0)(_Addresses).remote(),
              "wall_deadline": None if deadline is None else time.time() + deadline - time.monotonic()}
    with tempfile.TemporaryDirectory(prefix="souk-ray-lightgbm-") as storage:
        trainer = LightGBMTrainer(
            _lightgbm_worker, train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": WORKER_CPUS}),
            run_config=RunConfig(name="souk-fit-ltr", storage_path=storage))
        _run(trainer, "fit ltr (LightGBM)")
    if not out.is_file():
        raise ConfigError("fit ltr on Ray: rank 0 wrote no model; the model directory must be on storage that "
                          "rank 0's machine reaches (the same machine for --ray auto)")
    done = json.loads(out.read_text())
    out.unlink()
    return [(lgb.Booster(model_str=d["model"]), d["history"], d["cut"]) for d in done]


class _Addresses:
    """Where each worker's LightGBM listens, per task (a fresh port each time: a port just released may still
    refuse a new listener)."""

    def __init__(self) -> None:
        self.seen: dict[int, dict[int, str]] = {}

    def put(self, task: int, rank: int, address: str) -> None:
        self.seen.setdefault(task, {})[rank] = address

    def get(self, task: int, world: int) -> list[str] | None:
        got = self.seen.get(task, {})
        return [got[r] for r in range(world)] if len(got) == world else None


def _network(addresses: Any, task: int, rank: int, world: int) -> dict[str, Any]:
    """LightGBM's network parameters for `task`: this worker's free port, every worker's address."""
    import socket

    import ray

    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    ray.get(addresses.put.remote(task, rank, f"{ray.util.get_node_ip_address()}:{port}"))
    waited = time.monotonic()
    while (machines := ray.get(addresses.get.remote(task, world))) is None:
        if time.monotonic() - waited > 300:
            raise ConfigError("LightGBM on Ray: a worker never reported its address")
        time.sleep(0.05)
    return {"machines": ",".join(machines), "local_listen_port": port, "num_machines": world,
            "tree_learner": "data", "pre_partition": True}


def _lightgbm_worker(config: dict[str, Any]) -> None:
    """One LightGBM worker: each task trained over LightGBM's network (addresses exchanged per task); rank 0's
    clock decides the deadline (broadcast every `BUDGET_EVERY` rounds) and rank 0 writes the models."""
    import ray
    import ray.train
    from ray.train.collective import broadcast_from_rank_zero

    from souk.training.ltr import train_booster

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    wall = config["wall_deadline"]
    deadline = None if wall is None else time.monotonic() + wall - time.time()

    def agree(stop: bool) -> bool:
        return bool(broadcast_from_rank_zero(stop if rank == 0 else None))

    done = []
    for i, task in enumerate(config["tasks"]):
        X, y, groups = ray.get(task["shards"][rank])
        valid = ray.get(task["valid"]) if task["valid"] is not None else None
        network = _network(config["addresses"], i, rank, world)
        booster, history, cut = train_booster(X, y, groups, valid, task["rounds"], {**config["params"], **network},
                                              deadline, config["names"], agree=agree, every=BUDGET_EVERY)
        done.append({"model": booster.model_to_string(), "cut": cut,
                     "history": {k: {m: [float(v) for v in vs] for m, vs in h.items()} for k, h in history.items()}})
        booster.free_network()
        if cut:
            break
    if rank == 0:
        Path(config["out"]).write_text(json.dumps(done))
