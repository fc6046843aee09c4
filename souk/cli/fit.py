"""Commands that learn: `souk fit` (stages from judged queries) and `souk models` (what was fitted)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from souk.cli.output import console, emit_json


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
        options = None
        if events:
            from souk.events.labels import ltr_options

            options = {"ltr": ltr_options(alone=dev_set is None)}
        import os

        from souk.indexing import ray_cluster

        previous = os.environ.get("SOUK_RAY")
        if ray:  # a fitted bi-encoder's re-encode (its activation) runs on the same cluster
            os.environ["SOUK_RAY"] = ray
        assert train_set is not None  # --train, --events or both, checked above
        try:
            with ray_cluster(ray):
                outcomes = fit(index, train_set, dev_set, names, budget_min * 60, seed, corpus_dir=train,
                               options=options, ray_workers=ray_workers if ray else 0)
        finally:
            if previous is None:
                os.environ.pop("SOUK_RAY", None)
            else:
                os.environ["SOUK_RAY"] = previous
        report = {"events": clicks_report} if clicks_report else {}
        result: dict[str, Any] = {"index": str(index), **report, "models": [
            {"stage": o.stage, "model": o.model, "seconds": round(o.seconds, 1),
             "active": o.manifest.get("active", True),
             "dev": o.manifest.get("dev"), "stopped_by_budget": o.manifest.get("stopped_by_budget", False)}
            for o in outcomes]}
        if as_json:
            emit_json(result)
            return
        for m in result["models"]:
            budget = " (budget ran out: best checkpoint kept)" if m["stopped_by_budget"] else ""
            console.print(f"{m['stage']}: {m['model']} in {m['seconds']}s, dev {m['dev']}{budget}")

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
