"""Shared fixtures: small real indexes built from the fixtures and the shipped demo catalog."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support import FIXTURES, REPO, Prebuild, run_main


def _prebuilds(item) -> dict:
    """The background commands `item` waits on: its `prebuild` marks' names, looked up in its module's PREBUILD
    (empty where the module declares none, as without ../shared)."""
    declared = getattr(getattr(item, "module", None), "PREBUILD", None) or {}
    names = [n for mark in item.iter_markers("prebuild") for n in mark.args]
    return {n: declared[n] for n in names if n in declared}


def pytest_collection_modifyitems(session, config, items) -> None:
    """Tests waiting on background commands (`support.Prebuild`) run last, once those have had the idle time."""
    items.sort(key=lambda item: bool(_prebuilds(item)))  # stable: the order stays within each group


def pytest_collection_finish(session) -> None:
    """Start the background commands of the modules whose tests will run, in the order they will wait on them."""
    jobs: dict = {}
    for item in session.items:
        jobs.update(_prebuilds(item))
    if jobs:
        Prebuild.start(jobs)


def pytest_sessionfinish(session, exitstatus) -> None:
    Prebuild.stop_all()


@pytest.fixture(scope="session")
def product_index(tmp_path_factory) -> Path:
    """The tiny bilingual product fixture, indexed with an inferred schema."""
    from souk.catalogs import read_catalog
    from souk.index import Index
    from souk.schema import infer_schema

    path = tmp_path_factory.mktemp("products") / "index"
    records = list(read_catalog(FIXTURES / "products.jsonl"))
    schema = infer_schema([r.data for r in records])
    index = Index.create(path, schema)
    with index.writer() as w:
        w.add(records)
        w.commit()
    return path


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory) -> Path:
    """The shipped demo catalog indexed with its schema."""
    path = tmp_path_factory.mktemp("demo") / "index"
    run_main("index", str(REPO / "souk/demo/pricewatch.json"), "--index", str(path), "--schema",
             str(REPO / "souk/demo/pricewatch.toml"))
    return path


@pytest.fixture
def copy_fixture(tmp_path):
    def _copy(name: str) -> Path:
        dst = tmp_path / name
        src = FIXTURES / name
        shutil.copytree(src, dst) if src.is_dir() else shutil.copy(src, dst)
        return dst

    return _copy


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A random-weight tiny BERT bi-encoder directory (reads Chinese and English), loaded by path."""
    from model_fakes import write_tiny_bert

    return write_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-encoder")


@pytest.fixture(scope="session")
def tiny_english_encoder(tiny_encoder, tmp_path_factory) -> Path:
    """The same weights under a manifest saying the model reads no Chinese."""
    from souk.models.registry import write_model_manifest

    path = tmp_path_factory.mktemp("models") / "tiny-english"
    shutil.copytree(tiny_encoder, path)
    write_model_manifest(path, "bi-encoder", reads_han=False)
    return path


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory) -> Path:
    """A random-weight tiny BERT sequence classifier (one logit) directory."""
    from model_fakes import write_tiny_bert

    return write_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-cross-encoder", kind="cross-encoder")


@pytest.fixture(scope="session")
def tiny_cross(tmp_path_factory) -> dict:
    """A tiny BERT cross-encoder fitted on a synthetic collection (see tests/tiny_bert.py)."""
    from tiny_bert import tiny_fitted_index

    return tiny_fitted_index(tmp_path_factory.mktemp("cross"))


@pytest.fixture(scope="session")
def ray_local():
    """ONE local Ray cluster for the whole session (2 CPUs, a 100 MB object store), stopped at the end;
    tests using it are marked slow (starting it takes tens of seconds)."""
    import os

    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, object_store_memory=100 * 1024 * 1024, include_dashboard=False, log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()
