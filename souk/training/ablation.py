"""The fit report's ablation (`souk fit --report DIR --ablate bi.distill,fusion.stacking,...`).

Each named idea is an option of one fitter with an on and an off value (`IDEAS`: name, stage, what it does,
True/False unless it says otherwise; its default is the fitter's). For every idea the index is copied twice
and fitted once with the idea on and once off, with the same budget, seed, stages and other options, on the
train split minus a fixed held-out slice
(`kit.held_out_train`: the fitters never see it); each arm is then scored with nDCG@10 on that held-out
TRAIN slice and on dev, for each report pipeline (default `full`), and timed. `DIR/ablation.json` and
`DIR/ablation.md` hold the table (written after every arm, so a stopped run keeps what it measured). An idea
deserves to be on by default only where its on arm beats the off arm on held-out TRAIN queries.
Without ideas to ablate, the report lists the ideas this souk knows and their defaults.
Misuse: deciding a default from the dev column (dev early-stops the fitters; it is reported, not chosen on).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from souk.errors import ConfigError
from souk.evaluation.datasets import Dataset
from souk.plugins import Registry
from souk.training.fit import FITTERS, fit
from souk.training.kit import candidates, held_out_train, ndcg10


@dataclass(frozen=True)
class Idea:
    """An option `stage.key` of a fitter, what turning it on does, and its values on and off."""

    stage: str
    key: str
    what: str
    on: Any = True
    off: Any = False

    @property
    def name(self) -> str:
        return f"{self.stage}.{self.key}"


IDEAS: Registry[Idea] = Registry("idea")
for _stage, _key, _what in (
    ("bi", "mlm", "domain MLM post-training of the bi-encoder on the index's own text before fine-tuning"),
    ("bi", "distill", "the reranker teaches the bi-encoder (margin-MSE over mined candidates)"),
    ("bi", "temperature_schedule", "InfoNCE temperature grows from small to a ceiling instead of the fixed 0.05"),
    ("bi", "medium_negatives", "hard negatives from the fine-tuned recall's ranks around 30, re-mined once"),
    ("cross", "mlm", "domain MLM post-training of the cross-encoder before fine-tuning"),
    ("cross", "out_of_fold", "the cross mix is chosen against the ltr's out-of-fold scores, not the served ltr's"),
    ("interact", "pretrain", "pre-train the interaction model on the corpus and query log"),
    ("wordvec", "pretrain", "pre-train the word vectors on the corpus and query log"),
    ("words", "new_words", "frequent short queries and catalog n-grams jieba splits become dictionary words"),
    ("dense", "prf", "pseudo-relevance feedback: the query vector moves toward documents BM25 and dense agree on"),
    ("fusion", "stacking", "a LightGBM ranker over the retrievers' scores and ranks instead of the fixed fusion"),
    ("interact", "ensemble", "interaction models from consecutive seeds, their scores averaged (budget-sized)"),
    ("ltr", "ensemble", "LightGBM rankers from other seeds averaged into one model (as many as the budget holds)"),
    ("ltr", "linear_gain", "LightGBM's label gain is the grade (the gain souk's nDCG scores) instead of 2^grade - 1"),
):
    IDEAS.register(f"{_stage}.{_key}", Idea(_stage, _key, _what))
IDEAS.register("wordvec.latin_grams", Idea("wordvec", "latin_grams", "character trigrams of Latin letter and digit "
                                           "runs as word-vector features (on: 3, off: 0)", on=3, off=0))


def default_of(idea: Idea) -> Any:
    """The idea's default in this souk (its fitter's declared option), or None when the fitter (or the option)
    is not in this build."""
    if idea.stage not in FITTERS:
        return None
    declared = FITTERS.get(idea.stage).options
    if dataclasses.is_dataclass(declared):
        f = {f.name: f for f in dataclasses.fields(declared)}.get(idea.key)
        return None if f is None else f.default
    return declared.get(idea.key) if isinstance(declared, dict) else None


def known_ideas() -> list[dict[str, Any]]:
    """Every registered idea: name, stage, what it does, default (None: not in this build)."""
    return [{"idea": name, "stage": idea.stage, "what": idea.what, "default": default_of(idea)}
            for name, idea in IDEAS.in_order()]


def check_ideas(names: Sequence[str], stages: Sequence[str] | None) -> list[Idea]:
    """The ideas named, each one this build's fitter declares; `ConfigError` otherwise (naming the known ones)."""
    ideas = []
    for name in names:
        idea = IDEAS.get(name)
        if idea.stage not in FITTERS or default_of(idea) is None:
            raise ConfigError(f"--ablate {name}: the {idea.stage} fitter of this build has no option {idea.key!r}")
        if stages and idea.stage not in stages:
            raise ConfigError(f"--ablate {name}: its stage {idea.stage} is not among --stages {','.join(stages)}")
        ideas.append(idea)
    return ideas


def score(index_path: Path, pipeline: str, data: Dataset) -> float:
    """nDCG@10 of `pipeline` on `data` over the index as it is now."""
    from souk.index import Index
    from souk.ranking.pipeline import build_pipeline

    pipe = build_pipeline(pipeline, Index.open(index_path).searcher())
    heads = candidates(pipe, data.queries, 10)
    return ndcg10({q: list(zip(ids, s.tolist())) for q, (ids, s) in heads.items()}, data.qrels)


def ablate(index_path: str | Path, train: Dataset, dev: Dataset | None, ideas: Sequence[str], out: str | Path,
           budget_s: float, seed: int = 13, stages: Sequence[str] | None = None,
           options: dict[str, dict[str, Any]] | None = None, corpus_dir: Path | None = None,
           pipelines: Sequence[str] = ("full",), progress: bool = False) -> dict[str, Any]:
    """Fit each idea on and off (see the module docstring) on copies of the index; returns the report and
    writes `out/ablation.json` and `out/ablation.md`. The index itself is left as it was."""
    chosen = check_ideas(list(ideas), stages)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    learn, held = held_out_train(train)
    report: dict[str, Any] = {
        "index": str(index_path), "train": f"{train.name}/{train.split}", "dev": f"{dev.name}/{dev.split}" if dev
        else None, "train_queries": len(learn.qrels), "held_out_train_queries": len(held.qrels),
        "budget_min": round(budget_s / 60, 2), "seed": seed, "stages": list(stages) if stages else None,
        "pipelines": list(pipelines), "options": options or {}, "rows": [], "ideas": known_ideas()}
    arms = Path(tempfile.mkdtemp(prefix="ablation-", dir=out))
    try:
        for idea in chosen:
            for on in (True, False):
                copy_dir = arms / f"{idea.stage}-{idea.key}-{'on' if on else 'off'}"
                shutil.copytree(index_path, copy_dir, symlinks=True)
                arm_options = copy.deepcopy(options or {})
                arm_options.setdefault(idea.stage, {})[idea.key] = idea.on if on else idea.off
                t0 = time.monotonic()
                outcomes = fit(copy_dir, learn, dev, stages, budget_s, seed, corpus_dir=corpus_dir,
                               progress=progress, options=arm_options)
                seconds = time.monotonic() - t0
                row = {"idea": idea.name, "stage": idea.stage, "arm": "on" if on else "off",
                       "held_out_train": {p: round(score(copy_dir, p, held), 4) for p in pipelines},
                       "dev": {p: round(score(copy_dir, p, dev), 4) for p in pipelines} if dev else {},
                       "seconds": round(seconds, 1),
                       "models": [{"stage": o.stage, "model": o.model, "active": o.manifest.get("active", True),
                                   "fit_dev": o.manifest.get("dev"), "note": o.manifest.get("note")}
                                  for o in outcomes]}
                report["rows"].append(row)
                shutil.rmtree(copy_dir, ignore_errors=True)
                write_report(report, out)
    finally:
        shutil.rmtree(arms, ignore_errors=True)
    report["verdicts"] = verdicts(report)
    write_report(report, out)
    return report


def verdicts(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per idea: the on arm's held-out-train gain over off in each report pipeline; it deserves to be on by
    default only when it gained in one and lost in none (the last stage must not lose what recall won; a pipeline
    the idea does not touch, such as `hybrid` for a `wordvec` option, scores the same in both arms)."""
    arms: dict[str, dict[str, dict]] = {}
    for row in report["rows"]:
        arms.setdefault(row["idea"], {})[row["arm"]] = row
    out = {}
    for name, pair in arms.items():
        if {"on", "off"} <= set(pair):
            gains = {p: round(pair["on"]["held_out_train"][p] - pair["off"]["held_out_train"][p], 4)
                     for p in report["pipelines"]}
            out[name] = {"held_out_train_gain": gains,
                         "on_by_default": min(gains.values()) >= 0 and max(gains.values()) > 0}
    return out


def write_report(report: dict[str, Any], out: Path) -> None:
    """`out/ablation.json` and `out/ablation.md` from `report` (the rows measured so far)."""
    (out / "ablation.json").write_text(json.dumps(report, indent=1))
    pipes = report.get("pipelines", ["full"])
    lines = [f"# souk fit report: {report.get('train')} -> {report.get('index')}", ""]
    if report.get("rows"):
        lines += [f"Budget {report['budget_min']} min per arm, seed {report['seed']}, stages "
                  f"{','.join(report['stages']) if report['stages'] else 'all that apply'}; held-out TRAIN: "
                  f"{report['held_out_train_queries']} queries no arm trained on; nDCG@10.", ""]
        head = ["idea", "stage", "arm"] + [f"held-out train {p}" for p in pipes] + [f"dev {p}" for p in pipes]
        lines += ["| " + " | ".join(head + ["seconds"]) + " |", "|" + "---|" * (len(head) + 1)]
        for r in report["rows"]:
            cells = [r["idea"], r["stage"], r["arm"]] + [f"{r['held_out_train'][p]:.4f}" for p in pipes] + [
                f"{r['dev'][p]:.4f}" if p in r["dev"] else "-" for p in pipes]
            lines.append("| " + " | ".join(cells + [f"{r['seconds']:.0f}"]) + " |")
        for name, v in (report.get("verdicts") or {}).items():
            gains = ", ".join(f"{p} {g:+.4f}" for p, g in v["held_out_train_gain"].items())
            lines.append(f"\n{name}: held-out train gain {gains} -> {'on' if v['on_by_default'] else 'off'} by default")
        lines.append("")
    lines += ["## Ideas (`--ablate` any of these; `--option STAGE.KEY=true|false` sets one)", "",
              "| idea | stage | default | what it does |", "|---|---|---|---|"]
    for i in report.get("ideas", known_ideas()):
        shown = "not in this build" if i["default"] is None else str(i["default"]).lower()
        lines.append(f"| {i['idea']} | {i['stage']} | {shown} | {i['what']} |")
    if report.get("models"):
        lines += ["", "## Models fitted", "", "| stage | model | active | dev |", "|---|---|---|---|"]
        lines += [f"| {m['stage']} | {m['model']} | {m['active']} | {json.dumps(m.get('dev'))} |"
                  for m in report["models"]]
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
