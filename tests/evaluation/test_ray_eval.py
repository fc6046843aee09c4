"""`souk eval --ray`: queries split over Ray workers (the session's local cluster), runs merged, the
metrics those of the single-process run."""
import json

import pytest

from model_fakes import vector_index

pytestmark = pytest.mark.slow


def test_split_queries_give_the_single_process_metrics(ray_local, tiny_encoder, tmp_path):
    from souk.evaluation.datasets import load_beir
    from souk.evaluation.ray_eval import evaluate_on_ray
    from souk.evaluation.runner import evaluate
    from souk.index import Index
    from souk.ranking.pipeline import build_pipeline

    index = vector_index(tmp_path, tiny_encoder, 50)
    beir = tmp_path / "beir"
    docs = [json.loads(line) for line in (beir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}",
                                                            "text": " ".join(d["text"].split()[1:4])}) + "\n"
                                                for i, d in enumerate(docs[:21])), encoding="utf-8")
    (beir / "qrels").mkdir()
    (beir / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                            + "".join(f"q{i}\t{d['_id']}\t1\n" for i, d in enumerate(docs[:21])))
    data = load_beir(beir, "dev")
    for pipeline in ("bm25", "hybrid"):
        local = evaluate(build_pipeline(pipeline, Index.open(index.path)), data, k=10, progress=False)
        split = evaluate_on_ray(index.path, pipeline, data, k=10, workers=2)
        # the same ranking; dense scores may differ in the last float bits (a query encoded with other batch mates
        # takes other BLAS kernel blocks on some CPUs: seen on an AVX2-only EPYC)
        assert split.run.keys() == local.run.keys()
        for qid, ranked in local.run.items():
            assert [d for d, _ in split.run[qid]] == [d for d, _ in ranked], qid
            assert [s for _, s in split.run[qid]] == pytest.approx([s for _, s in ranked], rel=1e-5, abs=1e-6), qid
        assert split.per_query.means() == pytest.approx(local.per_query.means())
        assert len(split.latency_ms) == len(local.latency_ms) == 21
