"""Issue acceptance on the full SciFact dev split, through the real CLI: index with vectors, eval each pipeline."""
import json

import pytest

from support import DATA, Prebuild, needs_shared, run_souk

pytestmark = [needs_shared("data", "scifact"), pytest.mark.slow, pytest.mark.prebuild("scifact-vectors")]
# encoding the 5,183 abstracts takes minutes on 2 cores: started when the session begins, on idle core time
PREBUILD = {"scifact-vectors": ("index", str(DATA / "scifact"), "--index", "{out}/index", "--vectors")} \
    if (DATA / "scifact").is_dir() else {}


@pytest.fixture(scope="module")
def scifact_index():
    return Prebuild.wait("scifact-vectors") / "index"


def ndcg(index, pipeline: str) -> float:
    out = run_souk("eval", "--index", str(index), "--dataset", str(DATA / "scifact"), "--split", "dev",
                   "--pipeline", pipeline, "--json")
    return json.loads(out.stdout.strip().splitlines()[-1])["ndcg@10"]


def test_bm25_dense_hybrid_on_scifact_dev(scifact_index):
    bm25, dense, hybrid = (ndcg(scifact_index, p) for p in ("bm25", "dense", "hybrid"))
    assert bm25 >= 0.67
    # the bar is 0.62 (measured 0.6201 with exact or bf16 documents; bf16 kernels differ across CPUs by
    # ~1e-3). An int8 path is chosen only within issue 21's quality bar, |delta nDCG@10| <= 0.005: on an AMD EPYC
    # with VNNI (2026-12-07) openvino-int8 was chosen under the suite's load and gave 0.6159.
    backend = json.loads((scifact_index / "manifest.json").read_text())["models"]["embedding"]["backend"]
    assert dense >= (0.6201 - 0.005 if "int8" in backend else 0.618), backend
    assert hybrid >= 0.70 and hybrid > max(bm25, dense)
