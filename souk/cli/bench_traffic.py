"""`souk bench traffic`: the result of `make bench-traffic` (learning from simulated shoppers) as one table."""
from __future__ import annotations

from pathlib import Path

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
                ("A/B over interleaving", result["ab_over_interleaving"]),
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
        for label, value in rows:
            console.print(f"{label:>42}: {value}", highlight=False)
