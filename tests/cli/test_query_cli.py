"""The real `souk` CLI for query understanding: suggest, synonyms, keywords, bench suggest."""
import json
import random

import pytest

from support import FIXTURES, run_main


def last_json(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def snack_index(tmp_path_factory):
    """A small synthetic catalog whose titles say 朱古力 and a query log that says 巧克力."""
    from souk.catalogs import read_catalog
    from souk.index import Index
    from souk.schema import Schema

    rng = random.Random(1)
    root = tmp_path_factory.mktemp("snacks")
    flavours, products = ["草莓", "香草", "抹茶", "芒果", "榛子"], ["饼干", "蛋糕", "威化", "雪糕", "蛋卷"]
    brands = ["嘉顿", "明治", "乐天", "好丽友", "格力高"]
    with (root / "snacks.jsonl").open("w", encoding="utf-8") as fh:
        for n in range(600):
            title = f"{rng.choice(brands)} {rng.choice(flavours + ['朱古力'] * 2)}{rng.choice(products)} 盒装"
            fh.write(json.dumps({"id": f"s{n}", "title": title, "brand": title.split()[0]}, ensure_ascii=False) + "\n")
    with (root / "queries.txt").open("w", encoding="utf-8") as fh:
        for _ in range(600):
            fh.write(f"{rng.choice(brands)} {rng.choice(flavours + ['巧克力'] * 2)} {rng.choice(products)}\n")
    schema = Schema.from_dict({"id": "id", "fields": {"id": {"kind": "keyword"}, "title": {"kind": "text"},
                                                      "brand": {"kind": "keyword"}}})
    index = Index.create(root / "index", schema)
    with index.writer() as w:
        w.add(read_catalog(root / "snacks.jsonl"))
        w.commit()
    return root


@pytest.mark.slow
def test_suggest_and_mine_over_an_index(snack_index):
    ix = str(snack_index / "index")
    out = last_json(run_main("suggest", "--index", ix, "zhug", "-k", "3", "--json"))
    assert out["suggestions"][0]["text"] == "朱古力" and out["suggestions"][0]["match"] == "pinyin"
    assert out["cached"] is False and out["completions"] > 10
    mined = last_json(run_main("synonyms", "mine", "--index", ix, "--log", str(snack_index / "queries.txt"),
                               "--top", "3", "--min-count", "3", "--json"))
    assert mined["applied"] is False and mined["fields"] == ["title"] and mined["texts"] >= 600
    assert sorted(map(sorted, mined["known_found"])) == [["巧克力", "朱古力"]]  # in the shipped set already
    assert all({p["a"], p["b"]} != {"巧克力", "朱古力"} for p in mined["pairs"])


@pytest.mark.slow
def test_synonyms_expand_check_and_errors(tmp_path):
    out = last_json(run_main("synonyms", "expand", "朱古力 TV", "--json"))
    assert {"巧克力", "chocolate", "television"} <= {e["text"] for e in out["expansions"]}
    bad = tmp_path / "bad.toml"
    bad.write_text('[zh]\nrules = ["糖, 糖果"]\n', encoding="utf-8")
    proc = run_main("synonyms", "check", str(bad), check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "single character" in proc.stderr


@pytest.mark.slow
def test_keywords_and_bench_suggest():
    out = last_json(run_main("keywords", "i am looking for a waterproof hiking jacket for women that is not too "
                             "expensive and has a hood", "--json"))
    assert (
        out["reduced"] and out["reduced_text"] == "waterproof hiking jacket women hood" and "looking" in out["dropped"]
    )
    bench = last_json(run_main("bench", "suggest", "--dataset", str(FIXTURES / "beir-mini"), "--prefixes",
                               "20", "--json"))
    assert {"p50_ms", "p99_ms", "titles", "build_s"} <= set(bench) and bench["titles"] == 8
    assert 0 < bench["p50_ms"] < 5 and bench["prefixes"] == 20
