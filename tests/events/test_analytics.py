"""Analytics over a small hand-made log: per day, top and zero-result queries, CTR and MRR, disagreements, SVG."""
from __future__ import annotations

from souk.events.analytics import bar_svg, report

DAY = 86_400.0


def log():
    records = []
    for i in range(6):  # "drill": the third result is what people want
        sid = f"d{i}"
        records.append({"kind": "search", "search_id": sid, "t": 10 * DAY + i, "query": "Drill ", "pipeline": "keyword",
                        "shown": ["a", "b", "c", "x"], "total": 40, "offset": 0})
        records.append({"kind": "click", "search_id": sid, "id": "c"})
        if i < 3:
            records.append({"kind": "click", "search_id": sid, "id": "b"})
    for i in range(4):
        records.append({"kind": "search", "search_id": f"z{i}", "t": 11 * DAY, "query": "zzqx", "pipeline": "ltr",
                        "shown": [], "total": 0})
    records.append({"kind": "click", "search_id": "unknown", "id": "a"})
    return records


def test_tables_count_what_the_log_holds():
    data = report(log())
    assert data["searches"] == 10 and data["clicked_searches"] == 6 and data["actions"] == {"click": 10}
    assert [d["searches"] for d in data["searches_per_day"]] == [6, 4]
    assert data["top_queries"][0] == {"query": "Drill ", "searches": 6, "ctr": 1.0}
    assert data["zero_result_queries"] == [{"query": "zzqx", "searches": 4}]
    assert data["lowest_ctr_queries"][0]["query"] == "zzqx"
    by_position = {p["position"]: p for p in data["by_position"]}
    assert by_position[1]["ctr"] == 0.0 and by_position[2]["ctr"] == 0.5 and by_position[3]["ctr"] == 1.0
    pipelines = {p["pipeline"]: p for p in data["by_pipeline"]}
    assert pipelines["keyword"]["mrr"] == round((3 / 2 + 3 / 3) / 6, 4) and pipelines["ltr"]["ctr"] == 0.0
    [worst] = data["disagreements"]
    assert worst["query"] == "Drill " and worst["most_attractive"] == "c" and worst["tau"] < 0


def test_plots_are_svg_with_escaped_labels():
    svg = bar_svg(["<script>", "b"], [1, 2], "t & t")
    assert svg.startswith("<svg") and "<script>" not in svg and "&lt;script&gt;" in svg and svg.count("<rect") == 2
    assert set(report(log())["plots"]) == {"searches_per_day", "ctr_by_position", "mrr_by_pipeline"}
