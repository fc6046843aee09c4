"""`souk fit`: train each learnable stage of an index from judged queries, within a time budget.

A fitter is registered by stage name in `FITTERS` with `@register_fitter(name, ...)` (which records when
it applies, its budget share and order); it receives a `FitJob` (the
index, train and dev splits, its share of the budget as a deadline, the seed, the device, a
directory to write into) and returns the manifest fields of the model it wrote (dev metrics,
hyper-parameters, curve, ...). `fit` publishes each model through the index's `ModelStore` only
when its fitter returns, so an interrupted or failed fit leaves the active models untouched.
Misuse: choosing hyper-parameters on the dev split's test-time numbers; early-stop on dev, tune on train.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from souk.errors import ConfigError, ModelError
from souk.evaluation.datasets import Dataset
from souk.models.store import ModelStore
from souk.plugins import Registry, parse_options


@dataclass
class FitJob:
    """What one fitter may use. `deadline` is a `time.monotonic()` value: stop and keep the best by then."""

    index_path: Path
    train: Dataset
    dev: Dataset | None
    corpus_dir: Path | None
    workdir: Path
    deadline: float
    seed: int = 13
    device: str = "cpu"
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    workers: int = 0  # Ray Train workers a fitter may spread over (Ray initialized); 0: this process only

    @property
    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()


class Fitter(Protocol):
    def __call__(self, job: FitJob) -> dict[str, Any]: ...


@dataclass
class FitterEntry:
    """A registered fitter and what `fit` needs to schedule it (see `register_fitter`)."""

    fitter: Fitter
    applies: Callable[..., bool] = lambda schema: True  # (schema) or (schema, index): does it apply to this index?
    share: float = 1.0               # relative share of the time budget
    order: int = 50
    # (index, model dir): work that makes a model active
    on_activate: Callable[[Path, Path], dict[str, Any]] | None = None
    # trains data-parallel on Ray Train (`souk.training.distributed`) under `fit(ray=...)`
    distributed: bool = False
    # the options `job.options` may hold: a dataclass type, or a dict of defaults (typed by their values); None:
    # not declared (passed through unchecked)
    options: Any = None


FITTERS: Registry[FitterEntry] = Registry("fitter", builtins=(
    "souk.training.ltr", "souk.training.cross", "souk.training.interact", "souk.training.wordvec", "souk.training.bi",
    "souk.training.prf", "souk.training.stacking", "souk.training.words"))


def register_fitter(name: str, applies: Callable[..., bool] = lambda schema: True, share: float = 1.0,
                    order: int = 50, on_activate: Callable[[Path, Path], dict[str, Any]] | None = None,
                    distributed: bool = False, options: Any = None) -> Callable[[Fitter], Fitter]:
    """Decorator: register the fitter of stage `name`; `order` sets which stage fits first (a
    later stage may use an earlier one's model, e.g. the cross-encoder trains on the bi-encoder's recall);
    `on_activate(index_path, model_dir)` runs before a model of the stage becomes active (e.g. re-encoding
    the corpus with a new bi-encoder); if it fails, the model stays inactive. `distributed`: the fitter
    runs data-parallel on Ray Train when `fit` is given a cluster (it reads `distributed.replica()`).
    A fitter returning `{"skipped": reason}` (an option turned it off) publishes nothing; `"activate": False`
    publishes the model inactive; `"retire": True` with either leaves the stage with no active model (the idea
    is off, or the fitter found the stage does not pay over the stages fitted before it, so an earlier model of it
    does not either). Misuse: deactivating models from inside a fitter (a failed fit must leave them as they were).
    `options`: what `job.options` may hold, a dataclass type or the fitter's dict of defaults (each key typed by
    its default's type; None defaults take anything); `fit` refuses other keys and wrong types up front."""

    def deco(fitter: Fitter) -> Fitter:
        FITTERS.register(name, FitterEntry(fitter, applies, share, order, on_activate, distributed, options))
        return fitter

    return deco


def fitter_names() -> list[str]:
    """The registered fitters in the order they fit."""
    return [name for name, _ in sorted(FITTERS.items(), key=lambda kv: kv[1].order)]


_TYPES = (bool, int, float, str, list, dict)


@functools.lru_cache(maxsize=None)
def _options_class(stage: str, declared: Any) -> type:
    """The dataclass of a fitter's options: `declared` itself, or one made from its defaults (given as a tuple of
    (key, default) items, lists as tuples, so the cache can hash them): each key typed by its default (a float
    takes ints too), a None default taking anything."""
    if dataclasses.is_dataclass(declared):
        return declared  # type: ignore[return-value]
    fields = []
    for key, default in declared:
        kind = list if isinstance(default, tuple) else next((t for t in _TYPES if type(default) is t), Any)
        fields.append((key, kind, dataclasses.field(default=None)))
    return dataclasses.make_dataclass(f"{stage.title()}Options", fields)


def check_options(options: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """`options[STAGE][KEY]` checked against each fitter's declared options (`register_fitter(options=...)`,
    read by `souk.plugins.parse_options`): an unknown stage or key, or a value of the wrong type, is a
    `ConfigError` naming what is allowed. Returns the options as given (ints given for floats as floats).
    Misuse: checking after a fitter started (check first: a typo must not cost a fit)."""
    out: dict[str, dict[str, Any]] = {}
    for stage, raw in (options or {}).items():
        if stage not in FITTERS:
            raise ConfigError(f"option {stage}.*: unknown stage {stage!r}; stages that can be fitted: "
                              f"{', '.join(fitter_names())}")
        if not isinstance(raw, dict):
            raise ConfigError(f"option {stage}: expected a table of options, got {raw!r}")
        declared = FITTERS.get(stage).options
        if declared is None:
            out[stage] = dict(raw)
            continue
        if not dataclasses.is_dataclass(declared):
            declared = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in declared.items())
        parsed: Any = parse_options(stage, raw, _options_class(stage, declared))
        out[stage] = {k: getattr(parsed, k) for k in raw}
    return out


def _applies(entry: FitterEntry, index: Any) -> bool:
    """Ask a fitter's `applies` about the index: with the schema, and the index too when it takes two
    arguments (e.g. to sample the documents' language)."""
    import inspect

    takes_index = len(inspect.signature(entry.applies).parameters) >= 2
    return bool(entry.applies(index.schema, index) if takes_index else entry.applies(index.schema))


@dataclass
class FitOutcome:
    stage: str
    model: str | None
    manifest: dict[str, Any]
    seconds: float


def device() -> str:
    """`cuda` when torch sees a GPU, else `cpu` (the same code runs on both)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def fit(index_path: str | Path, train: Dataset, dev: Dataset | None, stages: Sequence[str] | None = None,
        budget_s: float = 1200.0, seed: int = 13, corpus_dir: Path | None = None, progress: bool = True,
        options: dict[str, dict[str, Any]] | None = None, ray_workers: int = 0) -> list[FitOutcome]:
    """Fit `stages` (default: every stage that applies to the index) in order, sharing the budget.
    `ray_workers` > 0: the stages that can train data-parallel do so over that many Ray Train workers (Ray
    already initialized, e.g. by `ray_cluster`; `ltr` reads `job.workers` itself: LightGBM's distributed mode
    on large data); the others fit in this process as without it."""
    from souk.index import Index

    options = check_options(options)
    index = Index.open(index_path)
    names = list(stages) if stages else [n for n in fitter_names() if _applies(FITTERS.get(n), index)]
    unknown = [n for n in names if n not in FITTERS]
    if unknown:
        raise ConfigError(f"--stages: unknown stage {unknown[0]!r}; stages that can be fitted: "
                          f"{', '.join(fitter_names())}")
    if not names:
        raise ConfigError("no learnable stage applies to this index; name one with --stages")
    if budget_s <= 0:
        raise ConfigError(f"--budget-min must be positive, got {budget_s / 60:g}")
    names.sort(key=lambda n: FITTERS.get(n).order)
    store = ModelStore(index.path)
    store.clean()
    outcomes = []
    start = time.monotonic()
    for i, name in enumerate(names):
        remaining = budget_s - (time.monotonic() - start)
        shares = [FITTERS.get(n).share for n in names[i:]]
        deadline = time.monotonic() + max(remaining, 0) * shares[0] / sum(shares)
        workdir = store.new(name)
        job = FitJob(index.path, train, dev, corpus_dir, workdir, deadline, seed, device(), progress,
                     dict((options or {}).get(name, {})), workers=ray_workers)
        t0 = time.monotonic()
        try:
            if ray_workers and FITTERS.get(name).distributed:
                from souk.training.distributed import fit_on_ray

                manifest = fit_on_ray(name, job, ray_workers)
            else:
                manifest = FITTERS.get(name).fitter(job)
        except BaseException:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
            raise
        seconds = time.monotonic() - t0
        manifest = {"seconds": round(seconds, 1), "device": job.device, "seed": seed,
                    "data": {"train": f"{train.name}/{train.split}", "dev": f"{dev.name}/{dev.split}" if dev else None},
                    **manifest}
        retire = bool(manifest.pop("retire", False))  # the stage does not pay: none of its models stays active
        if manifest.get("skipped"):  # an idea switched off: nothing was trained, nothing is published
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
            done = _retire(store, name) if retire else {}
            outcomes.append(FitOutcome(name, None, {**manifest, **done, "active": False}, seconds))
            continue
        activate = bool(manifest.pop("activate", True))  # a fitter may publish a model that lost on dev, inactive
        path = store.publish(name, workdir, manifest, activate=False)
        done = activate_model(index.path, path.name) if activate else _retire(store, name) if retire else {}
        outcomes.append(FitOutcome(name, path.name, {**manifest, **done, "active": activate}, seconds))
    return outcomes


def _retire(store: ModelStore, stage: str) -> dict[str, Any]:
    """Leave `stage` with no active model; `{"retired": name}` when one was active."""
    try:
        previous = store.active(stage)
    except ModelError:  # an unreadable entry: deactivating repairs it
        previous = None
    return {"retired": previous.name if previous is not None else None} if store.deactivate(stage) else {}


def activate_model(index_path: str | Path, name: str) -> dict[str, Any]:
    """Make fitted model `name` (e.g. `bi-2`) active: its stage's activation work first (nothing for most
    stages; re-encoding the corpus for `bi`), then the atomic switch. Returns what the work reported."""
    store = ModelStore(index_path)
    path = store.root / name
    stage = name.rsplit("-", 1)[0]
    entry = FITTERS.get(stage) if stage in FITTERS else None
    done: dict[str, Any] = {}
    if entry is not None and entry.on_activate is not None and (path / "manifest.json").is_file():
        done = {"activation": entry.on_activate(Path(index_path), path)}
    store.activate(name)
    return done
