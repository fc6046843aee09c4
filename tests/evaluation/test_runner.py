from pathlib import Path

import numpy as np
import pytest

from souk.errors import SoukError
from souk.evaluation.datasets import load_beir
from souk.evaluation.runner import evaluate
from souk.evaluation.runs import read_run, write_run
from souk.types import Ranking
from support import DATA, needs_shared

SUMMARY_KEYS = {"ndcg@10", "recall@100", "mrr@10", "map", "judged@10", "queries", "p50_ms", "p99_ms"}


def test_evaluate_tiny(tiny, fixtures: Path, bm25, capsys):
    evaluation = evaluate(bm25(fixtures / "tiny"), tiny, k=5, progress=True)
    summary = evaluation.summary()
    assert SUMMARY_KEYS <= set(summary) and summary["queries"] == 5 and summary["skipped"] == 1
    assert evaluation.per_query.qids == list(tiny.qrels) == list(evaluation.run)
    assert len(evaluation.latency_ms) == 5 and (evaluation.latency_ms > 0).all()
    assert all(0 < len(ranked) <= 5 for ranked in evaluation.run.values())
    assert summary["ndcg@10"] == pytest.approx(float(evaluation.per_query.values["ndcg@10"].mean()))
    assert 0 < summary["ndcg@10"] < 1 and summary["p50_ms"] <= summary["p99_ms"]
    assert capsys.readouterr().out == ""  # progress goes to stderr only


def test_duplicate_documents_from_a_pipeline_are_an_error(tiny):
    class Repeats:
        def search(self, query: str, k: int) -> Ranking:
            return Ranking(["d1", "d1"], np.array([2.0, 1.0]))

    with pytest.raises(SoukError, match="returned a document twice for query q1"):
        evaluate(Repeats(), tiny, progress=False)


@needs_shared("data")
@pytest.mark.parametrize(("collection", "split"), [("cranfield", "test"), ("scifact", "dev")])
def test_own_run_file_agrees_with_trec_eval(bm25, tmp_path: Path, collection, split):
    """Acceptance: nDCG@10, Recall@100, MAP of souk's own run file equal pytrec_eval's within 1e-4."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    dataset = load_beir(DATA / collection, split)
    evaluation = evaluate(bm25(DATA / collection), dataset, k=100, progress=False)
    run = read_run(write_run(evaluation.run, tmp_path / "run.trec"))
    ref = pytrec_eval.RelevanceEvaluator(dataset.qrels, {"ndcg_cut.10", "recall.100", "map"}).evaluate(
        {qid: dict(ranked) for qid, ranked in run.items()}
    )
    assert len(ref) == len(dataset) == evaluation.summary()["queries"]
    summary = evaluation.summary()
    for ours, theirs in (("ndcg@10", "ndcg_cut_10"), ("recall@100", "recall_100"), ("map", "map")):
        expected = np.mean([values[theirs] for values in ref.values()])
        assert summary[ours] == pytest.approx(expected, abs=1e-4), ours
        per_query = evaluation.per_query.values[ours]
        np.testing.assert_allclose(per_query, [ref[q][theirs] for q in evaluation.per_query.qids], atol=1e-6)
