"""Traffic commands: `souk events export`, `souk analytics`, `souk experiments`, `souk simulate`."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from souk.cli.output import console, emit_json
from souk.errors import ConfigError

SINCE_HELP = "Only events from then on: an ISO date/time (UTC), a Unix time, or an age such as 7d, 12h, 30m."


def parse_since(since: str | None) -> float | None:
    """`--since` as a Unix time (ConfigError naming the forms it takes)."""
    if not since:
        return None
    text = since.strip()
    units = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
    try:
        if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
            return time.time() - float(text[:-1]) * units[text[-1]]
        if text.replace(".", "", 1).isdigit():
            return float(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since: {since!r} is not a date, a Unix time or an age like 7d") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _log(index: Path):
    from souk.events.log import EventLog, Retention
    from souk.indexing import open_index

    return EventLog(open_index(index).path, Retention.from_env())


@contextmanager
def events_as_impression_log(index: Path):
    """A temporary impression log (`souk clicks learn` format) of the searches the clicks model has not learned
    yet; the mark `events/clicks-learned.json` moves on only when the caller's learning succeeded."""
    import json
    import tempfile

    from souk.errors import DatasetError
    from souk.events.export import impressions

    log = _log(index)
    mark = log.dir / "clicks-learned.json"
    since = json.loads(mark.read_text())["until"] if mark.is_file() else None
    rows = [r for r in impressions(log.read()) if since is None or float(r["ts"]) > since]
    if not rows:
        raise DatasetError("no searches in the event log since the clicks model last learned from it")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "impressions.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        yield path
    mark.write_text(json.dumps({"until": max(float(r["ts"]) for r in rows)}))


def register(app: typer.Typer) -> None:
    events = typer.Typer(no_args_is_help=True, help="The index's event log (searches, clicks, carts, purchases).")
    app.add_typer(events, name="events")

    @events.command("export")
    def export_cmd(
        index: Path = typer.Option(..., "--index"),
        since: Optional[str] = typer.Option(None, "--since", help=SINCE_HELP),
        fmt: str = typer.Option("jsonl", "--format",
                                help="jsonl (to stdout or --out) or parquet (needs pyarrow and --out)."),
        out: Optional[Path] = typer.Option(None, "--out", help="File to write (default: stdout for jsonl)."),
    ) -> None:
        """Export the event log, one record per search or action, oldest first."""
        from souk.events.export import write_jsonl, write_parquet

        records = _log(index).read(parse_since(since))
        if fmt == "jsonl":
            n = write_jsonl(records, out)
        elif fmt == "parquet":
            if out is None:
                raise ConfigError("--format parquet needs --out FILE")
            n = write_parquet(records, out)
        else:
            raise ConfigError(f"--format: expected jsonl or parquet, got {fmt!r}")
        if out is not None:
            console.print(f"{n} records written to {out}", highlight=False)

    @app.command("analytics")
    def analytics_cmd(
        index: Path = typer.Option(..., "--index"),
        since: Optional[str] = typer.Option(None, "--since", help=SINCE_HELP),
        top: int = typer.Option(20, "--top", help="Rows per table."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """What shoppers searched and clicked: per day, top and zero-result queries, click-through, disagreements."""
        from souk.events.analytics import report

        data = report(_log(index).read(parse_since(since)), top)
        if as_json:
            emit_json({k: v for k, v in data.items() if k != "plots"})
            return
        console.print(
            f"{data['searches']} searches, {data['clicked_searches']} with a click; actions {data['actions']}",
            highlight=False,
        )
        for title, rows in (("searches per day", data["searches_per_day"]), ("top queries", data["top_queries"]),
                            ("zero-result queries", data["zero_result_queries"]),
                            ("lowest click-through", data["lowest_ctr_queries"]), ("by position", data["by_position"]),
                            ("by pipeline", data["by_pipeline"]),
                            ("clicks disagree with the ranking", data["disagreements"])):
            console.print(f"\n[bold]{title}[/bold]")
            for row in rows:
                console.print("  " + "  ".join(f"{k}={v}" for k, v in row.items()), highlight=False, markup=False)

    @app.command("experiments")
    def experiments_cmd(
        index: Path = typer.Option(..., "--index"),
        since: Optional[str] = typer.Option(None, "--since", help=SINCE_HELP),
        experiment: Optional[str] = typer.Option(None, "--experiment",
                                                 help="A,B as given to --interleave (default: the largest)."),
        ab: Optional[str] = typer.Option(None, "--ab",
                                         help="A,B: also compare the searches each pipeline ran alone (an A/B "
                                              "split), by click-through."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Interleaved experiments: searches, wins of A and B, ties, sign-test p-value and the winner."""
        from souk.events.interleave import ab_summary, summary

        records = list(_log(index).read(parse_since(since)))
        data = summary(records, experiment)
        if ab:
            names = [p.strip() for p in ab.split(",")]
            if len(names) != 2:
                raise ConfigError(f"--ab: expected two pipelines as A,B, got {ab!r}")
            data["ab"] = ab_summary(records, *names)
        if as_json:
            emit_json(data)
            return
        for e in data["experiments"] or [data]:
            winner = {"a": e["a"], "b": e["b"]}.get(e["winner"] or "", "none yet")
            console.print(f"{e['experiment']}: {e['searches']} searches, wins "
                          f"{e['wins_a']}:{e['wins_b']}, ties {e['ties']}, "
                          f"p={e['p_value']:.4g}, winner {winner}", highlight=False)

    @app.command("simulate")
    def simulate_cmd(
        dataset: Path = typer.Option(..., "--dataset", help="BEIR directory whose judged queries the shoppers search."),
        split: str = typer.Option("train", "--split"),
        url: str = typer.Option(..., "--url", help="A running `souk serve`, e.g. http://127.0.0.1:8000"),
        searches: int = typer.Option(1000, "--searches"),
        seed: int = typer.Option(13, "--seed"),
        pipeline: Optional[str] = typer.Option(None, "--pipeline",
                                               help="Name a pipeline (default: none, so a running "
                                                    "experiment interleaves)."),
        ab: Optional[str] = typer.Option(None, "--ab", help="A,B: each search names one of the two at random (an A/B "
                                         "split); reports click-through per pipeline and the searches A/B needs."),
        eta: float = typer.Option(1.0, "--eta", help="Examination of position k is k^-eta."),
        noise: float = typer.Option(0.05, "--noise", help="Click probability of an examined irrelevant result."),
        size: int = typer.Option(10, "--page-size", help="Results a page shows (a shop's grid: homedepot.com shows "
                                 "24)."),
        next_page: float = typer.Option(0.0, "--next-page", help="Chance that a shopper who clicked nothing on page "
                                        "1 opens page 2 (0: page 1 only)."),
        per_shopper: int = typer.Option(1, "--per-shopper", help="Searches a shopper makes (one session id, one "
                                        "--ab arm); 1: independent searches."),
        engagement: Optional[str] = typer.Option(None, "--engagement", help="A,B: each shopper examines position k "
                                                 "with chance e k^-eta, e ~ Beta(A,B) drawn once a shopper (1,1: "
                                                 "uniform, no knowledge of the spread); default: e = 1 for all."),
        index: Optional[Path] = typer.Option(None, "--index",
                                             help="The server's index directory: its log is read after the run "
                                                  "for the interleaved searches' expected wins."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Simulated shoppers (position-biased clicks on judged queries) sending real searches and clicks."""
        import os

        from souk.bench.traffic import Shoppers, simulate
        from souk.evaluation.datasets import load_beir

        data = load_beir(dataset, split)
        key = os.environ.get("SOUK_SEARCH_KEY") or os.environ.get("SOUK_ADMIN_KEY")
        arms = tuple(p.strip() for p in ab.split(",")) if ab else None
        try:
            beta = tuple(float(x) for x in engagement.split(",")) if engagement else None
        except ValueError:
            beta = ()
        if beta is not None and len(beta) != 2:
            raise ConfigError(f"--engagement: expected A,B (a Beta distribution), got {engagement!r}")
        shoppers = Shoppers(eta, noise, size=size, next_page=next_page, per_shopper=per_shopper,
                            engagement=(beta[0], beta[1]) if beta else None)
        result = simulate(url, data, searches, seed, key, pipeline, shoppers, progress=sys.stderr.isatty(), ab=arms,
                          index=index)
        if as_json:
            emit_json(result)
            return
        console.print(f"{result['searches']} searches, {result['clicks']} clicks ({result['accepted']} acknowledged) "
                      f"in {result['seconds']}s", highlight=False)
