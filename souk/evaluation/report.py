"""An evaluation report: PNG plots plus one self-contained `index.html` that embeds them.

The HTML needs no network and no other file (plots are base64 data URIs); it also links the PNG
files written next to it for people who want them at full size.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from souk.evaluation.compare import Comparison, compare_runs
from souk.evaluation.metrics import score_run
from souk.evaluation.runner import Evaluation
from souk.evaluation.runs import Run, sort_run

HISTOGRAM_METRICS = ("ndcg@10", "recall@100", "mrr@10", "map")


def write_report(
    evaluation: Evaluation,
    directory: str | Path,
    baseline: Run | None = None,
    primary: str = "ndcg@10",
    worst: int = 20,
    title: str = "souk evaluation",
) -> Path:
    """Write plots and `index.html` into `directory`; returns the HTML path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    plots = {
        "metrics.png": _metric_histograms(evaluation),
        "latency.png": _latency_histogram(evaluation.latency_ms),
    }
    comparison = None
    if baseline is not None:
        comparison = compare_runs(baseline, evaluation.run, evaluation.dataset, primary=primary)
        before = score_run(baseline, evaluation.dataset.qrels, [primary]).values[primary]
        diff = evaluation.per_query.values[primary] - before
        plots["baseline_diff.png"] = _difference_plot(diff, primary, comparison)
    for name, png in plots.items():
        (out / name).write_bytes(png)
    page = _page(title, evaluation, plots, comparison, primary, worst)
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


# ---------------------------------------------------------------- plots


def _figure(width: float = 8.0, height: float = 4.0):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(figure) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _metric_histograms(evaluation: Evaluation) -> bytes:
    names = [n for n in HISTOGRAM_METRICS if n in evaluation.per_query.values]
    names = names or list(evaluation.per_query.values)[:4]
    columns = min(2, len(names))
    rows = -(-len(names) // columns)
    figure = _figure(5.0 * columns, 3.2 * rows)
    for ax, name in zip(figure.subplots(rows, columns, squeeze=False).flat, names):
        values = evaluation.per_query.values[name]
        ax.hist(values, bins=np.linspace(0, 1, 21), color="#3b6ea5", edgecolor="white")
        ax.axvline(values.mean(), color="#c0392b", linestyle="--", label=f"mean {values.mean():.3f}")
        ax.set(title=f"{name} per query", xlabel=name, ylabel="queries", xlim=(0, 1))
        ax.legend(loc="upper center")
    return _png(figure)


def _latency_histogram(latency_ms: np.ndarray) -> bytes:
    """Log-spaced bins when latencies span more than 20x, so one slow query hides nothing."""
    figure = _figure()
    ax = figure.subplots()
    low, high = (float(latency_ms.min()), float(latency_ms.max())) if len(latency_ms) else (0, 1)
    if low > 0 and high / low > 20:
        ax.hist(latency_ms, bins=np.geomspace(low, high, 40), color="#4c956c", edgecolor="white")
        ax.set_xscale("log")
    else:
        ax.hist(latency_ms, bins=40, color="#4c956c", edgecolor="white")
    for q, style in ((50, "--"), (99, ":")):
        value = float(np.percentile(latency_ms, q)) if len(latency_ms) else 0.0
        ax.axvline(value, color="#333333", linestyle=style, label=f"p{q} {value:.2f} ms")
    ax.set(title="search latency per query", xlabel="milliseconds", ylabel="queries")
    ax.legend()
    return _png(figure)


def _difference_plot(diff: np.ndarray, primary: str, comparison: Comparison) -> bytes:
    figure = _figure()
    ax = figure.subplots()
    ordered = np.sort(diff)[::-1]
    colors = np.where(ordered > 0, "#2e8b57", np.where(ordered < 0, "#c0392b", "#999999"))
    ax.bar(np.arange(len(ordered)), ordered, width=1.0, color=colors)
    ax.axhline(0, color="#333333", linewidth=0.8)
    ax.set(
        title=f"{primary}: this run minus baseline, per query "
        f"({comparison.wins} wins, {comparison.ties} ties, {comparison.losses} losses)",
        xlabel="queries, sorted by difference",
        ylabel=f"delta {primary}",
    )
    return _png(figure)


def plot_curve(path: Path, series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str,
               xlabel: str = "step", ylabel: str = "nDCG@10", kept: float | None = None, kept_label: str = "kept",
               lines: dict[str, float] | None = None, loss: tuple[Sequence[float], Sequence[float]] | None = None,
               notes: Sequence[tuple[float, float, str]] = ()) -> None:
    """A training curve as one PNG at `path`: each of `series` ({label: (x, y)}), horizontal `lines` (a
    baseline such as recall alone), a dashed mark at the `kept` x (the checkpoint or round kept), `loss` on a
    second axis and small `notes` ((x, y, text): phase names). Every fitter draws its curve with it.
    Misuse: plotting test-split numbers as the curve (the curve is the split that early-stopped)."""
    figure = _figure(6.0, 3.5)
    ax = figure.subplots()
    colors = ("#3b6ea5", "#c0392b", "#4c956c", "#8e44ad")
    for i, (label, (xs, ys)) in enumerate(series.items()):
        ax.plot(list(xs), list(ys), marker="o" if len(xs) < 40 else None, color=colors[i % len(colors)], label=label)
    for label, value in (lines or {}).items():
        ax.axhline(value, color="#c0392b", linestyle=":", label=label)
    if kept is not None:
        ax.axvline(kept, color="#333333", linestyle="--", label=kept_label)
    for x, y, text in notes:
        ax.annotate(text, (x, y), fontsize=6, alpha=0.5)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=7, loc="lower right")
    if loss is not None and len(loss[0]):
        twin = ax.twinx()
        twin.plot(list(loss[0]), list(loss[1]), color="#e67e22", alpha=0.6)
        twin.set_ylabel("loss")
    path.write_bytes(_png(figure))


def plot_bars(path: Path, values: Mapping[str, float], title: str, xlabel: str) -> None:
    """Horizontal bars, one per label, first label on top, as one PNG at `path` (e.g. ltr's feature gains).
    Misuse: hundreds of labels (pass the top few)."""
    items = list(values.items())[::-1]
    figure = _figure(8.0, 0.25 * len(items) + 1.2)
    ax = figure.subplots()
    ax.barh([k for k, _ in items], [v for _, v in items], color="#3b6ea5")
    ax.set(title=title, xlabel=xlabel)
    ax.tick_params(axis="y", labelsize=7)
    path.write_bytes(_png(figure))


# ---------------------------------------------------------------- html

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; }
table.queries td:nth-child(2) { min-width: 18em; }
.rel { color: #2e8b57; font-weight: 600; } .unj { color: #999; }
"""


def _page(
    title: str,
    evaluation: Evaluation,
    plots: dict[str, bytes],
    comparison: Comparison | None,
    primary: str,
    worst: int,
) -> str:
    dataset = evaluation.dataset
    summary = evaluation.summary()
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>",
        f"<p>dataset <b>{_e(dataset.name)}</b> split <b>{_e(dataset.split)}</b>: "
        f"{summary['queries']} queries evaluated, {summary['skipped']} skipped (no relevant "
        f"judgment), top {evaluation.k} retrieved.</p>",
        _table(["measure", "value"], [[k, _fmt(v)] for k, v in summary.items()]),
    ]
    if comparison is not None:
        parts += [
            "<h2>Against the baseline</h2>",
            _table(
                ["metric", "baseline", "this run", "delta", "p (randomization)", "p (t-test)"],
                [[m.metric, _fmt(m.mean_a), _fmt(m.mean_b), f"{m.delta:+.4f}",
                  _fmt(m.p_randomization), _fmt(m.p_ttest)] for m in comparison.metrics],
            ),
        ]
    parts.append("<h2>Plots</h2>")
    for name, png in plots.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<figure><img src='data:image/png;base64,{data}' alt='{name}'>"
            f"<figcaption><a href='{name}'>{name}</a></figcaption></figure>"
        )
    parts += [f"<h2>Worst {worst} queries by {_e(primary)}</h2>", _worst_table(evaluation, primary, worst)]
    parts.append("</body></html>")
    return "\n".join(parts)


def _worst_table(evaluation: Evaluation, primary: str, worst: int) -> str:
    per_query, dataset = evaluation.per_query, evaluation.dataset
    values = per_query.values[primary]
    rows = []
    for i in np.argsort(values, kind="stable")[:worst]:
        qid = per_query.qids[i]
        judgments = dataset.qrels[qid]
        top = sort_run({qid: evaluation.run.get(qid, [])}, 3)[qid]
        hits = " ".join(_docid_html(docid, judgments.get(docid)) for docid, _ in top)
        metrics = [_fmt(float(v[i])) for v in per_query.values.values()]
        rows.append([_e(qid), _e(dataset.queries[qid]), *metrics,
                     _fmt(float(evaluation.latency_ms[i])), hits or "(nothing)"])
    header = ["qid", "query", *per_query.values, "ms", "top 3 (grade)"]
    return _table(header, rows, escape=False, css="queries")


def _docid_html(docid: str, grade: int | None) -> str:
    css = "rel" if grade is not None and grade >= 1 else "unj"
    return f"<span class='{css}'>{_e(docid)} ({'-' if grade is None else grade})</span>"


def _table(header: list[str], rows: list[list], escape: bool = True, css: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(
            f"<td class='num'>{c}</td>" if _is_number(c) else f"<td>{_e(c) if escape else c}</td>"
            for c in row
        ) + "</tr>"
        for row in rows
    )
    return f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: float | int | dict) -> str:
    if isinstance(value, dict):  # per-stage figures
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def _is_number(cell: object) -> bool:
    try:
        float(str(cell))
    except ValueError:
        return False
    return True


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
