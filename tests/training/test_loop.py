"""The shared training loop on a linear model: it learns, keeps the best checkpoint, stops early and on time."""
from __future__ import annotations

import time

import pytest

from souk.training.kit import write_curve
from souk.training.loop import LoopConfig, Phase, train

torch = pytest.importorskip("torch")


def problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0])
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
    return batches, x, y


def loss_of(net, batch):
    x, y = batch
    return ((net(x).squeeze(-1) - y) ** 2).mean()


def test_the_loop_learns_and_restores_the_best_checkpoint():
    batches, x, y = problem()
    net = torch.nn.Linear(4, 1)
    metric = lambda: -float(loss_of(net, (x, y)).detach())  # noqa: E731
    result = train(net, [Phase("fit", lambda e: batches, len(batches), epochs=20)], loss_of, metric,
                   time.monotonic() + 60, LoopConfig(lr=0.05, warmup_steps=1, eval_every=8, patience=50),
                   progress=False)
    assert result.best > result.baseline and result.steps == 160
    assert metric() == pytest.approx(result.best, rel=1e-5)  # the best checkpoint is what the net holds
    assert [c["step"] for c in result.curve][:2] == [0, 8] and not result.stopped_by_budget


def test_patience_ends_a_phase_and_the_deadline_ends_the_loop(tmp_path):
    batches, x, y = problem()
    net = torch.nn.Linear(4, 1)
    result = train(net, [Phase("flat", lambda e: batches, len(batches), epochs=50)], loss_of, lambda: 0.0,
                   time.monotonic() + 60, LoopConfig(eval_every=4, patience=2), progress=False)
    assert result.stopped_early and result.steps == 8
    slow = lambda net, batch: (time.sleep(0.02), loss_of(net, batch))[1]  # noqa: E731
    result = train(torch.nn.Linear(4, 1), [Phase("fit", lambda e: batches, len(batches), epochs=100)], slow,
                   lambda: 0.0,
                   time.monotonic() + 0.5, LoopConfig(eval_every=1000), progress=False)
    assert result.stopped_by_budget and 0 < result.steps < 800
    write_curve(result.curve, tmp_path / "curve.png", "test", best_step=result.best_step)
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_agree_overrides_each_clock_decision():
    """`agree` (rank 0's decision in a data-parallel fit) is what the loop acts on, not its own clock."""
    batches, x, y = problem()
    asked = []

    def stop_at_step_5(code: int) -> int:
        asked.append(code)
        return 1 if len(result_steps) >= 5 else 0

    result_steps: list[int] = []
    counting = lambda net, batch: (result_steps.append(1), loss_of(net, batch))[1]  # noqa: E731
    result = train(torch.nn.Linear(4, 1), [Phase("fit", lambda e: batches, len(batches), epochs=10)], counting,
                   lambda: 0.0,
                   time.monotonic() + 60, LoopConfig(eval_every=1000), progress=False, agree=stop_at_step_5)
    assert result.stopped_by_budget and result.steps == 5 and set(asked) == {0}  # its own clock said go on
    assert [c["step"] for c in result.curve] == [0, 5]  # ... and not to evaluate at step 5 (agree said 1 there too)
    evals = train(torch.nn.Linear(4, 1), [Phase("fit", lambda e: batches, len(batches), epochs=1)], loss_of,
                  lambda: 0.0,
                  time.monotonic() + 60, LoopConfig(eval_every=1000, patience=100), progress=False,
                  agree=lambda code: 1)
    assert evals.stopped_by_budget and evals.steps == 0  # code 1 before the first step: the deadline
