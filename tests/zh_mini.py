"""The tiny Chinese fixture (tests/fixtures/zh-mini: 50 titles, 25 train and 5 dev queries), indexed and
fitted (wordvec, interact) once per test process, shared by the word-vector and interaction tests."""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from support import FIXTURES

FIXTURE = FIXTURES / "zh-mini"
# small and quick: seconds on two cores
FAST = {"wordvec": {"dim": 32, "gensim_epochs": 5, "epochs": 4, "batch_size": 8, "lr": 0.02},
        "interact": {"epochs": 4, "train_depth": 10, "depth": 50, "batch_size": 8, "ensemble": False}}


def build_index(path: Path, records_dir: Path = FIXTURE):
    """A BEIR-schema index of a BEIR directory's corpus."""
    from souk.catalogs import read_catalog
    from souk.index import Index
    from souk.schema import beir_schema

    index = Index.create(path, beir_schema())
    with index.writer() as writer:
        writer.add(read_catalog(records_dir))
        writer.commit()
    return index


def fit_fast(path: Path, stages=("wordvec", "interact"), budget_s: float = 600.0, data: Path = FIXTURE, options=None):
    from souk.evaluation.datasets import load_beir
    from souk.training.fit import fit

    return fit(path, load_beir(data, "train"), load_beir(data, "dev"), list(stages), budget_s, seed=13,
               corpus_dir=data, progress=False, options=options or FAST)


@functools.lru_cache(maxsize=1)
def fitted_index() -> Path:
    """The fixture indexed with wordvec and interact fitted (do not modify it: copy it first)."""
    root = Path(tempfile.mkdtemp(prefix="souk-zh-mini-"))
    atexit.register(shutil.rmtree, root, True)
    path = root / "index"
    build_index(path)
    fit_fast(path)
    return path


def copy_of_fitted(tmp_path: Path) -> Path:
    """A private copy of the fitted fixture index, free to modify."""
    dst = tmp_path / "index"
    shutil.copytree(fitted_index(), dst)
    return dst
