"""`souk eval` and `souk compare`: ranking quality of a pipeline, and whether a change helped.

Heavy imports (numpy, matplotlib, scipy, the index) stay inside the commands so `souk --help`
stays fast. With `--json` the last stdout line is one JSON object; progress goes to stderr.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from souk.errors import ConfigError
from souk.cli.output import console, emit_json

if TYPE_CHECKING:
    from souk.evaluation.compare import Comparison

DatasetOpt = Annotated[Path, typer.Option("--dataset", help="BEIR directory (queries.jsonl, qrels/).")]
SplitOpt = Annotated[str, typer.Option("--split", help="Qrels split: qrels/<split>.tsv.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")]
PrimaryOpt = Annotated[
    str, typer.Option("--metric", help="Metric for wins/losses and per-query plots, e.g. ndcg@10.")
]


def register(app: typer.Typer) -> None:
    """Add the `eval` and `compare` commands to `app`."""
    app.command("eval")(eval_command)
    app.command("compare")(compare_command)


def eval_command(
    index: Annotated[Path, typer.Option("--index", help="Index directory to search.")],
    dataset: DatasetOpt,
    split: SplitOpt = "test",
    pipeline: Annotated[str, typer.Option("--pipeline",
                                          help="Pipeline: keyword, bm25, dense, hybrid, ltr, rerank, full or one the "
                                               "index config declares (dense needs --vectors).")] = "bm25",
    k: Annotated[int, typer.Option("--k", min=1, help="Documents retrieved per query.")] = 100,
    run: Annotated[Path | None, typer.Option("--run", help="Write the TREC run file here.")] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write index.html and PNG plots into this directory.")
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="TREC run to compare against, per query.")
    ] = None,
    metric: PrimaryOpt = "ndcg@10",
    json_output: JsonOpt = False,
    ray: Annotated[str | None, typer.Option("--ray", help="Split the queries over Ray workers: auto (a local cluster) "
                                                          "or a cluster ADDRESS.")] = None,
    served: Annotated[bool, typer.Option("--served", help="Score the pages `souk search` and the server show (matched "
                                                          "set, relaxation, partial matches), not the "
                                                          "pipeline's candidate ranking.")] = False,
) -> None:
    """Run every judged query through a pipeline; print quality metrics and latency."""
    from souk.evaluation.compare import compare_runs
    from souk.evaluation.datasets import load_beir
    from souk.evaluation.runner import evaluate
    from souk.evaluation.runs import read_run, write_run
    from souk.indexing import open_index
    from souk.ranking.pipeline import build_pipeline

    primary = _check_metric(metric)
    data = load_beir(dataset, split)
    baseline_run = read_run(baseline) if baseline is not None else None
    if ray:
        from souk.evaluation.ray_eval import evaluate_on_ray
        from souk.indexing import ray_cluster

        with ray_cluster(ray):
            evaluation = evaluate_on_ray(index, pipeline, data, k=k, metrics=_metrics(primary))
    elif served:
        from souk.engine import Engine

        evaluation = evaluate(ServedPages(Engine.open(index), pipeline), data, k=k, metrics=_metrics(primary),
                              progress=True)
    else:
        pipe = build_pipeline(pipeline, open_index(index))
        evaluation = evaluate(pipe, data, k=k, metrics=_metrics(primary), progress=True)
    result: dict = {
        **evaluation.summary(), "dataset": data.name, "split": split, "pipeline": pipeline, "k": k,
        **({"served": True} if served else {}),
    }
    if run is not None:
        result["run"] = str(write_run(evaluation.run, run, tag=f"souk-{pipeline}"))
    comparison = None
    if baseline_run is not None:
        comparison = compare_runs(baseline_run, evaluation.run, data, _metrics(primary), primary)
        result["baseline"] = _comparison_json(comparison, top=0)
    if report is not None:
        from souk.evaluation.report import write_report

        html = write_report(evaluation, report, baseline_run, primary, title=f"souk eval: {pipeline}")
        result["report"] = str(html)
    if json_output:
        emit_json(result)
        return
    console.print(_key_value_table(f"{data.name}/{split} {pipeline}", result))
    if comparison is not None:
        _print_comparison(comparison, "baseline", "this run", dataset)


def compare_command(
    run_a: Annotated[Path, typer.Argument(help="TREC run A (the baseline).")],
    run_b: Annotated[Path, typer.Argument(help="TREC run B (the change).")],
    dataset: DatasetOpt,
    split: SplitOpt = "test",
    metric: PrimaryOpt = "ndcg@10",
    top: Annotated[int, typer.Option("--top", min=0, help="Most disagreeing queries to show.")] = 10,
    json_output: JsonOpt = False,
) -> None:
    """Compare two runs: metric table, paired p-values, wins/ties/losses, biggest disagreements."""
    from souk.evaluation.compare import compare_runs
    from souk.evaluation.datasets import load_beir
    from souk.evaluation.runs import read_run

    primary = _check_metric(metric)
    data = load_beir(dataset, split)
    comparison = compare_runs(read_run(run_a), read_run(run_b), data, _metrics(primary), primary, top)
    if json_output:
        emit_json({
            "a": str(run_a), "b": str(run_b), "dataset": data.name, "split": split,
            "skipped": data.skipped, **_comparison_json(comparison, top),
        })
        return
    _print_comparison(comparison, run_a.name, run_b.name, dataset)


def _check_metric(name: str) -> str:
    from souk.evaluation.metrics import parse_metric

    try:
        parse_metric(name)
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--metric") from None
    return name


def _metrics(primary: str) -> list[str]:
    from souk.evaluation.metrics import DEFAULT_METRICS

    return list(dict.fromkeys([*DEFAULT_METRICS, primary]))


def _comparison_json(comparison: Comparison, top: int) -> dict:
    data = comparison.to_dict()
    data["metrics"] = {m.pop("metric"): m for m in data["metrics"]}
    data["disagreements"] = data["disagreements"][:top]
    return data


# ---------------------------------------------------------------- human output


def _key_value_table(title: str, values: dict):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in values.items():
        if not isinstance(value, dict):
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


def _print_comparison(comparison: Comparison, name_a: str, name_b: str, dataset: Path) -> None:
    from rich.markup import escape
    from rich.table import Table

    from souk.evaluation.datasets import corpus_titles

    shown = {docid for d in comparison.disagreements for docid, _ in d.top_a + d.top_b}
    titles = corpus_titles(dataset, shown | {docid for d in comparison.disagreements for docid in d.judgments})

    table = Table(title=escape(f"{name_a} (A) vs {name_b} (B), {comparison.queries} queries"))
    for column in ("metric", "A", "B", "B - A", "p randomization", "p t-test"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for m in comparison.metrics:
        table.add_row(m.metric, f"{m.mean_a:.4f}", f"{m.mean_b:.4f}", f"{m.delta:+.4f}",
                      f"{m.p_randomization:.4f}", f"{m.p_ttest:.4f}")
    console.print(table)
    console.print(
        f"{comparison.primary}: B wins {comparison.wins}, ties {comparison.ties}, "
        f"loses {comparison.losses}; queries missing from A {comparison.missing_a}, "
        f"from B {comparison.missing_b}"
    )
    for d in comparison.disagreements:
        tops = Table(title=f"query {escape(d.qid)}: {escape(d.text)}\n{comparison.primary} "
                           f"A {d.value_a:.4f}, B {d.value_b:.4f}", title_justify="left")
        for column in ("rank", "A top 5 (grade)", "B top 5 (grade)"):
            tops.add_column(column)
        for rank in range(max(len(d.top_a), len(d.top_b))):
            tops.add_row(str(rank + 1), _hit(d.top_a, rank, titles), _hit(d.top_b, rank, titles))
        console.print(tops)
        judged = [f"{docid} ({grade}) {titles.get(docid, '')}".rstrip() for docid, grade in d.judgments.items()]
        more = f" and {len(judged) - 20} more" if len(judged) > 20 else ""
        console.print(f"  relevant: {escape(', '.join(judged[:20]))}{more}", highlight=False)


def _hit(hits: list[tuple[str, int | None]], rank: int, titles: dict[str, str]) -> str:
    from rich.markup import escape

    if rank >= len(hits):
        return ""
    docid, grade = hits[rank]
    label = escape(f"{docid} ({'-' if grade is None else grade})")
    title = escape(titles.get(docid, ""))
    if grade is None:
        return f"[dim]{label}[/dim] {title}".rstrip()
    return (f"[green]{label}[/green] {title}" if grade >= 1 else f"{label} {title}").rstrip()


class ServedPages:
    """The first page of `k` hits exactly as `Engine.search` serves it (query steps, matching strategy,
    relaxation, partial matches), as a searcher `evaluate` can run; impressions are not logged.
    Misuse: comparing it with a pipeline's candidate ranking as if both were pages (the pipeline ranks
    candidates beyond the matched set)."""

    def __init__(self, engine, pipeline: str):
        self.engine, self.pipeline = engine, pipeline

    def search(self, text: str, k: int):
        import numpy as np

        from souk.types import Ranking

        res = self.engine.search(text, pipeline=self.pipeline, k=k, highlight=False, record=False,
                                 suggest_instead=False)
        ids = list(dict.fromkeys(h.id for h in res.hits))
        return Ranking(ids, np.arange(len(ids), 0, -1, dtype=np.float32))  # the page's order
