"""The training loop shared by the neural stages: phases of batches, AdamW, early stopping on a dev
metric, a deadline, the best checkpoint kept.

The same code runs on CUDA (bf16 autocast) and on CPU (bf16 autocast where the CPU has bf16
instructions, else fp32). Each phase (e.g. weak corpus pairs, then judged pairs) runs for its epochs
or its time share; the dev metric is measured at the start (unless told not to), every `eval_every`
steps (or `eval_every_s` seconds) and at the end of each phase; after `patience` evaluations without a gain in an
early-stopping phase, that phase
ends. When the deadline (minus `reserve_s` for the caller's own finishing work) comes, the loop stops
and the best checkpoint so far is restored. Misuse: an `evaluate` that reads the training queries;
it must score held-out ones.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from souk.progress import progress_bar


@dataclass
class Phase:
    """A stretch of training on one kind of data: `batches(epoch)` yields the batches of one pass."""

    name: str
    batches: Callable[[int], Iterable[Any]]
    steps_per_epoch: int
    epochs: int = 1
    max_seconds: float | None = None  # this phase's share of the time
    early_stop: bool = True           # evaluations in this phase count towards `patience`


@dataclass(frozen=True)
class LoopConfig:
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_steps: int = 50
    eval_every: int = 100
    eval_every_s: float | None = None  # ... or after this many seconds of training, whichever comes first
    patience: int = 3
    grad_clip: float = 1.0
    reserve_s: float = 0.0      # seconds kept after the loop for the caller's finishing work
    reserve_evals: float = 0.0  # ... plus this many evaluations' worth (scoring held-out queries)
    seed: int = 13
    eval_at_start: bool = True  # measure the untrained model (the curve's first point)


@dataclass
class LoopResult:
    """What the loop did: best dev metric (and at which step), the untrained one, the curve."""

    best: float
    best_step: int
    baseline: float
    steps: int
    curve: list[dict[str, Any]] = field(default_factory=list)
    stopped_by_budget: bool = False
    stopped_early: bool = False


def autocast_dtype(device: str):
    """bf16 on CUDA when supported and on CPUs with bf16 instructions; None means fp32."""
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    from souk.models.cross_encoder import offered_paths

    return torch.bfloat16 if offered_paths().get("torch-bf16") is None else None


def set_threads() -> int:
    """Set torch's threads for training by `souk.models.cross_encoder.torch_threads` and return them."""
    import torch

    from souk.models.cross_encoder import torch_threads

    n = torch_threads()
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(net, phases: list[Phase], loss_of: Callable[[Any, Any], Any], evaluate: Callable[[], float] | None,
          deadline: float, config: LoopConfig = LoopConfig(), device: str = "cpu", progress: bool = True,
          description: str = "training", on_best: Callable[[], None] | None = None,
          agree: Callable[[int], int] | None = None) -> LoopResult:
    """Train `net` (already on `device`) through `phases`; `loss_of(net, batch)` returns a scalar loss
    tensor; `evaluate()` returns the dev metric (higher is better); `on_best()` runs right after an
    evaluation that set a new best. The best checkpoint is loaded into `net` on return.

    `agree(code)` returns the code every replica acts on (data-parallel training: rank 0's, broadcast; see
    `souk.training.distributed`): each decision that reads a clock (stop for the deadline or the phase's
    time share, evaluate now) goes through it so all replicas take the same steps."""
    import torch

    seed_everything(config.seed)
    agree = agree or (lambda code: code)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warm = lambda step: min(1.0, (step + 1) / max(config.warmup_steps, 1))  # noqa: E731
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warm)
    dtype = autocast_dtype(device)
    t_start = time.monotonic()
    step, eval_cost, step_cost = 0, 0.0, 0.0
    left_after = lambda cost: config.reserve_s + cost * (1 + config.reserve_evals)  # noqa: E731  (final eval + reserve)
    curve: list[dict[str, Any]] = []
    best_state = None
    loss_avg = math.nan

    last_eval = t_start

    def measure(phase: str) -> float:
        nonlocal eval_cost, best_state, last_eval
        t0 = time.monotonic()
        net.eval()
        with torch.no_grad():
            metric = float(evaluate()) if evaluate else -float(loss_avg if not math.isnan(loss_avg) else 0.0)
        net.train()
        eval_cost = time.monotonic() - t0
        last_eval = time.monotonic()
        curve.append({"step": step, "phase": phase, "loss": None if math.isnan(loss_avg) else round(loss_avg, 5),
                      "dev": round(metric, 5), "seconds": round(time.monotonic() - t_start, 1)})
        if best_state is None or metric > result.best:
            result.best, result.best_step = metric, step
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
            if on_best:
                on_best()
        return metric

    result = LoopResult(best=-math.inf, best_step=0, baseline=math.nan, steps=0)
    if config.eval_at_start or evaluate is None:
        result.baseline = measure("start")
    total = sum(p.steps_per_epoch * p.epochs for p in phases)
    net.train()
    with progress_bar(description, total, enabled=progress) as advance:
        for phase in phases:
            phase_start, stale, since_eval = time.monotonic(), 0, 0
            done = False
            for epoch in range(phase.epochs):
                for batch in phase.batches(epoch):
                    now = time.monotonic()
                    stop = agree(1 if now + step_cost + left_after(eval_cost) > deadline else
                                 2 if phase.max_seconds is not None and now - phase_start > phase.max_seconds else 0)
                    if stop == 1:
                        result.stopped_by_budget = done = True
                        break
                    if stop == 2:
                        done = True
                        break
                    with torch.autocast(device_type=device, dtype=dtype or torch.float32, enabled=dtype is not None):
                        loss = loss_of(net, batch)
                    loss.backward()
                    if config.grad_clip:
                        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                    optimizer.step()
                    schedule.step()
                    optimizer.zero_grad(set_to_none=True)
                    value = float(loss.detach())
                    step_cost = (
                        time.monotonic() - now if step_cost == 0 else 0.9 * step_cost + 0.1 * (time.monotonic() - now)
                    )
                    loss_avg = value if math.isnan(loss_avg) else 0.95 * loss_avg + 0.05 * value
                    step += 1
                    since_eval += 1
                    advance(1, f"[{phase.name}] loss {loss_avg:.3f} dev {result.best:.3f}")
                    if agree(
                        int(
                            since_eval >= config.eval_every
                            or (config.eval_every_s is not None and time.monotonic() - last_eval >= config.eval_every_s)
                        )
                    ):
                        since_eval = 0
                        before = result.best
                        measure(phase.name)
                        stale = 0 if result.best > before else stale + 1
                        if phase.early_stop and stale >= config.patience:
                            result.stopped_early = done = True
                            break
                if done:
                    break
            if since_eval and agree(int(time.monotonic() + left_after(eval_cost) <= deadline)):
                measure(phase.name)
            if result.stopped_by_budget:
                break
    result.steps = step
    result.curve = curve
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return result


def plot_curve(curve: list[dict[str, Any]], path, title: str) -> None:
    """Loss and dev metric against steps, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [c["step"] for c in curve]
    ax.plot(steps, [c["dev"] for c in curve], marker="o", color="tab:blue", label="dev nDCG@10")
    ax.set_xlabel("step")
    ax.set_ylabel("dev nDCG@10")
    losses = [(c["step"], c["loss"]) for c in curve if c["loss"] is not None]
    if losses:
        ax2 = ax.twinx()
        ax2.plot(*zip(*losses), color="tab:red", alpha=0.6, label="loss")
        ax2.set_ylabel("loss")
    for c in curve:
        if c["phase"] != "start":
            ax.annotate(c["phase"], (c["step"], c["dev"]), fontsize=6, alpha=0.5)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
