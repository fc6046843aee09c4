"""`souk bench traffic`: the result of `make bench-traffic` (learning from simulated shoppers) as one table."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from souk.cli.output import console, emit_json


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("traffic")
    def traffic_cmd(
        directory: Path = typer.Option(Path(".bench/traffic"), "--dir",
                                       help="Where `make bench-traffic` wrote its steps' JSON."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """BM25, judged ltr and click ltr on dev, the share of the judged gain, interleaving vs A/B searches."""
        from souk.bench.traffic import report

        result = report(directory)
        if as_json:
            emit_json(result)
            return
        n, e = result["ndcg@10"], result["interleaving"]
        rows = [("dev nDCG@10 bm25", n["bm25"]), ("dev nDCG@10 ltr fitted on judged train", n["judged_ltr"]),
                ("dev nDCG@10 ltr fitted from clicks", n["click_ltr"]),
                ("click ltr's share of the judged gain", result["share_of_judged_gain"]),
                (f"interleaving {e['experiment']}", f"{e['searches']} searches, wins {e['wins_a']}:{e['wins_b']}, "
                 f"p={e['p_value']}, winner {e['winner']} (offline {result['offline_winner']})"),
                ("interleaving: searches to p < 0.05", result["interleaving_searches_to_significance"]),
                ("A/B split: searches needed (80% power)", result["ab_searches_needed"]),
                ("A/B over that (not like for like)", result["ab_over_interleaving"]),
                ("bootstrap, 80% power: interleaving", result["bootstrap"]["interleaving_searches_needed"]),
                ("bootstrap, 80% power: A/B split", result["bootstrap"]["ab_searches_needed"]),
                ("bootstrap: A/B over interleaving", result["bootstrap"]["ab_over_interleaving"])]
        if (s := result.get("shoppers")) is not None:
            i = s["interleaving"]
            rows += [(f"shoppers ({s['per_shopper']} searches, Beta{tuple(s['engagement'] or ())})",
                      f"interleaving {i['searches']} searches, wins {i['wins_a']}:{i['wins_b']}, p={i['p_value']}"),
                     ("shoppers, 80% power: interleaving", f"{s['interleaving_shopper_searches_needed']} "
                      f"({s['interleaving_searches_needed']} resampling searches)"),
                     ("shoppers, 80% power: A/B split by shopper", f"{s['ab_shopper_searches_needed']} "
                      f"({s['ab_searches_needed']} resampling searches)"),
                     ("shoppers: A/B over interleaving", s["ab_over_interleaving"]),
                     ("shoppers: A/B from expected click-through", f"{s['ab_expected_shopper_searches_needed']} "
                      f"({s['ab_expected_searches_needed']} x design effect {s['ab_design_effect']})"),
                     ("shoppers: interleaving from expected wins",
                      f"{s['interleaving_expected_shopper_searches_needed']} "
                      f"({s['interleaving_expected_searches_needed']} x {s['interleaving_design_effect']})"),
                     ("shoppers, expected: A/B over interleaving", s["expected_ab_over_interleaving"])]
        for name, found in (result.get("exact") or {}).items():
            for row in found["rows"]:
                ratios = ", ".join(f"{m} {n} ({row['ab_over_interleaving'][m]}x)" for m, n in row["ab"].items())
                rows.append((f"exact 80% power, {name.replace('_', ' ')}, {row['per_shopper']} a shopper",
                             f"interleaving {row['interleaving']} (original draft "
                             f"{row['interleaving_original_draft']}); A/B {ratios}"))
        for label, value in rows:
            console.print(f"{label:>42}: {value}", highlight=False)

    @bench_app.command("power")
    def power_cmd(
        index: Path = typer.Option(..., "--index", help="Index whose two pipelines are compared (models active)."),
        dataset: Path = typer.Option(..., "--dataset", help="BEIR directory whose judged queries shoppers search."),
        split: str = typer.Option("dev", "--split"),
        pipelines: str = typer.Option("bm25,ltr", "--pipelines", help="A,B: the two pipelines compared."),
        per_shopper: str = typer.Option("1,3,10,30", "--per-shopper",
                                        help="Searches a shopper makes (A/B buckets shoppers), one row each."),
        engagement: Optional[str] = typer.Option(None, "--engagement", help="A,B: shoppers' examination scale e ~ "
                                                 "Beta(A,B) (as `souk simulate --engagement`); default e = 1."),
        eta: float = typer.Option(1.0, "--eta", help="Examination of position k is e k^-eta."),
        noise: float = typer.Option(0.05, "--noise", help="Click probability of an examined irrelevant result."),
        searches: int = typer.Option(3000, "--searches", help="Also report each design's power at this many."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Searches for 80% power, interleaving vs an A/B split, exact under the simulated shoppers' click model."""
        from souk.bench.power import METRICS, exact_power, pipeline_rankings
        from souk.bench.traffic import Shoppers
        from souk.errors import ConfigError
        from souk.evaluation.datasets import load_beir

        names = [p.strip() for p in pipelines.split(",")]
        if len(names) != 2 or names[0] == names[1] or not all(names):
            raise ConfigError(f"--pipelines: expected two different pipelines as A,B, got {pipelines!r}")
        try:
            counts = [int(x) for x in per_shopper.split(",")]
            beta = tuple(float(x) for x in engagement.split(",")) if engagement else None
        except ValueError:
            raise ConfigError("--per-shopper: expected whole numbers like 1,3,10; --engagement: A,B numbers") from None
        if beta is not None and len(beta) != 2:
            raise ConfigError(f"--engagement: expected A,B (a Beta distribution), got {engagement!r}")
        shoppers = Shoppers(eta, noise, engagement=(beta[0], beta[1]) if beta else None)
        data = load_beir(dataset, split)
        rankings = pipeline_rankings(index, data.queries, names[0], names[1], shoppers.size)
        result = {"pipelines": names, "dataset": f"{data.name}/{data.split}",
                  **exact_power(rankings, data.qrels, shoppers, counts, at=searches)}
        if as_json:
            emit_json(result)
            return
        i = result["interleaving"]
        console.print(f"{names[0]} vs {names[1]} on {result['queries']} queries: interleaving wins "
                      f"{i['wins_a']:.4f}:{i['wins_b']:.4f} a search", highlight=False)
        for m in METRICS:
            a, b = (result["metrics"][m][s]["mean"] for s in "ab")
            console.print(f"  A/B {m}: {a:.4f} vs {b:.4f}", highlight=False)
        for row in result["searches_needed"]:
            ab = ", ".join(f"{m} {row['ab'][m]} ({row['ab_over_interleaving'][m]}x)" for m in METRICS)
            console.print(f"{row['per_shopper']:>3} a shopper: interleaving {row['interleaving']} (original draft "
                          f"{row['interleaving_original_draft']}); A/B {ab}",
                          highlight=False)
            at = row["power_at"]
            console.print(f"    power at {at['searches']} searches: interleaving {at['interleaving']}; A/B "
                          + ", ".join(f"{m} {at['ab'][m]}" for m in METRICS), highlight=False)
