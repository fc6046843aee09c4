"""Commands that learn: `souk fit` (stages from judged queries) and `souk models` (what was fitted)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.table import Table

from souk.cli.output import console, emit_json


def parse_option(text: str) -> tuple[str, str, Any]:
    """`STAGE.KEY=VALUE` as (stage, key, value): VALUE read as JSON (true, 3, 0.5, [1, 2], "x"), else as text.
    Misuse: spaces around `=` (the shell hands them over as part of the key)."""
    import json

    from souk.errors import ConfigError

    name, sep, raw = text.partition("=")
    stage, dot, key = name.partition(".")
    if not sep or not dot or not stage or not key:
        raise ConfigError(f"--option {text!r}: expected STAGE.KEY=VALUE, e.g. dense.prf=true")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return stage, key, value


def register(app: typer.Typer) -> None:
    @app.command("fit")
    def fit_cmd(
        index: Path = typer.Option(..., "--index", help="Index directory (its models/ gets the fitted models)."),
        train: Optional[Path] = typer.Option(None, "--train",
                                             help="BEIR directory with judged queries (optional with --events)."),
        events: bool = typer.Option(False, "--events",
                                    help="Also learn from the index's event log: labels from clicks, "
                                         "position bias removed."),
        events_since: Optional[str] = typer.Option(None, "--events-since",
                                                   help="Only events from then on (as souk analytics --since)."),
        events_until: Optional[str] = typer.Option(None, "--events-until",
                                                   help="Only events before then (same forms as --events-since)."),
        click_grades: str = typer.Option("posterior", "--click-grades", help="With --events: how clicks become grades, "
                                         "posterior (clicks over expected examinations) or ips (inverse propensity)."),
        click_shown: Optional[bool] = typer.Option(None, "--click-shown/--no-click-shown",
                                                   help="With --events: grade shown documents above unshown "
                                                   "candidates (default: souk's choice)."),
        split: str = typer.Option("train", "--split", help="Split to train on."),
        dev_split: Optional[str] = typer.Option(None, "--dev-split", help="Split to early-stop on (never trained on)."),
        stages: Optional[str] = typer.Option(None, "--stages",
                                             help="Comma-separated stages (default: every one that applies)."),
        budget_min: float = typer.Option(20.0, "--budget-min", help="Time budget in minutes for all stages together."),
        seed: int = typer.Option(13, "--seed"),
        ray: Optional[str] = typer.Option(None, "--ray", help="Train the stages that can (bi, cross, interact; ltr "
                                          "on large data) data-parallel on Ray Train, and re-encode on it: auto (a "
                                          "local cluster) or a cluster ADDRESS."),
        ray_workers: int = typer.Option(2, "--ray-workers", min=1, help="Ray Train workers (DDP replicas) with --ray."),
        option: Optional[List[str]] = typer.Option(None, "--option", help="A fitter's option, STAGE.KEY=VALUE "
                                                   "(VALUE read as JSON, else as text), e.g. dense.prf=true; "
                                                   "repeatable."),
        report: Optional[Path] = typer.Option(None, "--report", help="Write the fit report (ablation.md, "
                                              "ablation.json) into this directory: the ideas souk knows, and with "
                                              "--ablate each idea fitted on and off."),
        ablate: Optional[str] = typer.Option(None, "--ablate", help="With --report: comma-separated ideas (e.g. "
                                             "dense.prf,fusion.stacking), each fitted on and off on copies of the "
                                             "index (same budget and seed per arm), scored on held-out TRAIN "
                                             "queries and dev; the index itself is left as it was."),
        report_pipelines: str = typer.Option("full", "--report-pipelines",
                                             help="With --ablate: comma-separated pipelines each arm is scored with."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Train the index's learnable ranking stages from judged queries; the best model of each becomes active."""
        from souk.evaluation.datasets import load_beir
        from souk.training.fit import fit

        from souk.errors import ConfigError

        if train is None and not events:
            raise ConfigError("souk fit needs judged queries (--train DIR), the index's event log (--events), or both")
        train_set = load_beir(train, split) if train is not None else None
        dev_set = load_beir(train, dev_split) if dev_split and train is not None else None
        clicks_report = None
        if events:
            from souk.cli.events import _log, parse_since
            from souk.events.labels import SHOWN_FLOOR, click_dataset, merge

            until = parse_since(events_until)
            records = (r for r in _log(index).read(parse_since(events_since)) if until is None
                       or float(r.get("t", 0)) < until)
            clicked, clicks_report = click_dataset(records, grading=click_grades,
                                                   shown=SHOWN_FLOOR if click_shown is None else click_shown)
            train_set = merge(train_set, clicked) if train_set is not None else clicked
        names = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
        # from clicks alone nothing unbiased can veto the model (see souk.training.ltr): it becomes active
        options: dict[str, dict[str, Any]] = {}
        if events:
            from souk.events.labels import ltr_options

            options = {"ltr": ltr_options(alone=dev_set is None)}
        for stage, key, value in map(parse_option, option or []):
            options.setdefault(stage, {})[key] = value
        from souk.training.fit import check_options

        options = check_options(options)  # an unknown stage or key fails before any fitting
        if ablate and report is None:
            raise ConfigError("--ablate needs --report DIR (where the ablation table is written)")
        if report is not None and ablate:
            from souk.training.ablation import ablate as run_ablation

            assert train_set is not None
            ideas = [i.strip() for i in ablate.split(",") if i.strip()]
            table = run_ablation(index, train_set, dev_set, ideas, report, budget_min * 60, seed, names, options,
                                 corpus_dir=train, progress=not as_json,
                                 pipelines=[p.strip() for p in report_pipelines.split(",") if p.strip()])
            if as_json:
                emit_json({"report": str(report / "ablation.md"), "rows": table["rows"],
                           "verdicts": table["verdicts"]})
            else:
                console.print((report / "ablation.md").read_text())
            return
        import os

        from souk.indexing import ray_cluster

        previous = os.environ.get("SOUK_RAY")
        if ray:  # a fitted bi-encoder's re-encode (its activation) runs on the same cluster
            os.environ["SOUK_RAY"] = ray
        assert train_set is not None  # --train, --events or both, checked above
        try:
            with ray_cluster(ray):
                outcomes = fit(index, train_set, dev_set, names, budget_min * 60, seed, corpus_dir=train,
                               options=options or None, ray_workers=ray_workers if ray else 0)
        finally:
            if previous is None:
                os.environ.pop("SOUK_RAY", None)
            else:
                os.environ["SOUK_RAY"] = previous
        extra = {"events": clicks_report} if clicks_report else {}
        result: dict[str, Any] = {"index": str(index), **extra, "models": [
            {"stage": o.stage, "model": o.model, "seconds": round(o.seconds, 1),
             "active": o.manifest.get("active", True),
             "dev": o.manifest.get("dev"), "stopped_by_budget": o.manifest.get("stopped_by_budget", False),
             **({"retired": o.manifest["retired"]} if "retired" in o.manifest else {}),
             **({"kept": o.manifest["standing"]["model"]} if "standing" in o.manifest else {})}
            for o in outcomes]}
        if report is not None:
            from souk.training.ablation import known_ideas, write_report

            report.mkdir(parents=True, exist_ok=True)
            write_report({"train": f"{train_set.name}/{train_set.split}", "index": str(index), "ideas": known_ideas(),
                          "models": result["models"]}, report)
            result["report"] = str(report / "ablation.md")
        if as_json:
            emit_json(result)
            return
        for m in result["models"]:
            budget = " (budget ran out: best checkpoint kept)" if m["stopped_by_budget"] else ""
            state = "" if m["active"] else ", inactive" + (f"; retired {m['retired']}" if m.get("retired") else
                                                          f"; {m['kept']} stays active" if m.get("kept") else "")
            console.print(f"{m['stage']}: {m['model']} in {m['seconds']}s, dev {m['dev']}{budget}{state}")

    @app.command("models")
    def models_cmd(
        index: Path = typer.Option(..., "--index"),
        activate: Optional[str] = typer.Option(None, "--activate",
                                               help="Make this model (e.g. ltr-2) the active one of its stage."),
        seal: Optional[str] = typer.Option(None, "--seal",
                                           help="Record the file hashes of this model (one fitted by an "
                                           "older souk, whose files you trust) so it loads again."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """List the fitted models of an index and which is active."""
        from souk.indexing import open_index
        from souk.models.store import ModelStore

        from souk.training.fit import activate_model

        store = ModelStore(open_index(index).path)
        if seal:
            store.seal(seal)
        if activate:
            activate_model(store.root.parent, activate)
        models = store.list()
        if as_json:
            emit_json({"models": [{k: m.get(k)
                                   for k in ("name", "stage", "kind", "active", "created", "dev", "seconds",
                                             "device", "data")}
                                  for m in models]})
            return
        table = Table(title=f"models of {index}")
        for col in ("name", "kind", "active", "created", "dev"):
            table.add_column(col)
        for m in models:
            table.add_row(m["name"], str(m.get("kind")), "yes" if m["active"] else "", str(m.get("created")),
                          str(m.get("dev")))
        console.print(table)
