"""The shared training loop on a linear model: it learns, keeps the best checkpoint, stops early and on time."""
from __future__ import annotations

import time

import pytest

from souk.training.kit import DevEvaluator, epoch_curve, write_curve
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


def test_the_loop_keeps_the_lowest_value_of_a_lower_is_better_metric():
    batches, x, y = problem()
    net = torch.nn.Linear(4, 1)
    error = DevEvaluator(lambda: float(loss_of(net, (x, y)).detach()), "mse", greater_is_better=False)
    result = train(net, [Phase("fit", lambda e: batches, len(batches), epochs=10)], loss_of, error,
                   time.monotonic() + 60, LoopConfig(lr=0.05, warmup_steps=1, eval_every=4, patience=50),
                   progress=False)
    assert result.best < result.baseline and result.best == min(result.values)
    assert error() == pytest.approx(result.best, rel=1e-5)  # the lowest checkpoint is what the net holds


def test_a_known_start_is_recorded_not_measured_and_a_worse_run_keeps_the_start():
    batches, x, y = problem()
    net = torch.nn.Linear(4, 1)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    calls: list[int] = []
    never_better = DevEvaluator(lambda: (calls.append(1), 0.1)[1], start=0.9)
    result = train(net, [Phase("fit", lambda e: batches, len(batches), epochs=3)], loss_of, never_better,
                   time.monotonic() + 60, LoopConfig(lr=0.05, eval_every=len(batches), patience=2), progress=False)
    assert result.values == [0.9, 0.1, 0.1] and len(calls) == 2 and result.stopped_early
    assert epoch_curve(result.values, result.best_step, len(batches)) == ([0.9, 0.1, 0.1], 0)
    assert all(torch.equal(v, start[k]) for k, v in net.state_dict().items())  # the start is kept


def test_sparse_embeddings_train_with_sparse_adam_and_the_lr_decays_per_epoch():
    from souk.training.loop import optimizers_for

    net = torch.nn.ModuleDict({"emb": torch.nn.EmbeddingBag(10, 3, mode="sum", sparse=True),
                               "out": torch.nn.Linear(3, 1)})
    opts, dense = optimizers_for(net, LoopConfig(optimizer="adam"))
    assert [type(o).__name__ for o in opts] == ["Adam", "SparseAdam"] and len(dense) == 2
    with pytest.raises(ValueError, match="adamw or adam"):
        optimizers_for(net, LoopConfig(optimizer="sgd"))
    ids = torch.tensor([[1, 2], [3, 4]])

    def loss_of(model, batch):
        return model["out"](model["emb"](ids)).pow(2).mean()

    def batches(epoch):
        for _ in range(2):
            yield epoch

    lrs: list[float] = []  # the learning rate each sparse step runs with
    original = torch.optim.SparseAdam.step

    def step(self, *a, **k):
        lrs.append(self.param_groups[0]["lr"])
        return original(self, *a, **k)

    torch.optim.SparseAdam.step = step
    try:
        train(net, [Phase("fit", batches, 2, epochs=3)], loss_of, lambda: 0.0, time.monotonic() + 60,
              LoopConfig(lr=0.1, warmup_steps=0, lr_decay=0.5, eval_every=100, grad_clip=0.0), progress=False)
    finally:
        torch.optim.SparseAdam.step = original
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
