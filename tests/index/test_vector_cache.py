"""Per-commit vector caches that cannot be tricked: symlinks, killed writers, damaged files, read-only disks."""
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import souk.index.vectors.cache as cache
from souk.index.vectors import KEEP_CACHES, VectorCacheWarning, VectorSet, open_vector_set
from souk.ranking.pipeline import build_pipeline
from model_fakes import vector_index

N = 25


@pytest.fixture
def index(tmp_path, tiny_encoder):
    return vector_index(tmp_path, tiny_encoder, N)


def field_of(index):
    return index.schema.fields["embedding"]


def commit_more(index, ids):
    from souk.catalogs import Record

    with index.writer() as w:
        w.add([Record(line=i, data={"_id": d, "title": "tea", "text": f"green tea {d}"}) for i, d in enumerate(ids)])
        w.commit()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_symlinked_field_folder_is_never_pruned_through(index, tmp_path):
    elsewhere = tmp_path / "precious"
    for i in range(KEEP_CACHES + 3):  # looks like old caches, and would be pruned if followed
        (elsewhere / f"commit{i}").mkdir(parents=True)
        (elsewhere / f"commit{i}" / "data.txt").write_text("keep me")
    (elsewhere / ".tmp-x-1").mkdir()  # looks like a stale temp folder of a dead writer
    root = index.path / "vectors" / "embedding"
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    root.symlink_to(elsewhere, target_is_directory=True)
    with pytest.warns(VectorCacheWarning, match="outside the index"):
        vs = open_vector_set(index.searcher(), field_of(index))
    assert len(vs) == N
    assert sorted(p.name for p in elsewhere.iterdir()) == [".tmp-x-1", *(f"commit{i}" for i in range(KEEP_CACHES + 3))]
    assert all((elsewhere / f"commit{i}" / "data.txt").read_text() == "keep me" for i in range(KEEP_CACHES + 3))


def test_symlinked_entries_inside_the_cache_are_left_alone(index, tmp_path):
    root = index.path / "vectors" / "embedding"
    open_vector_set(index.searcher(), field_of(index))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_text("keep me")
    (root / "0000-old").symlink_to(outside, target_is_directory=True)
    os.utime(root / "0000-old", (1, 1), follow_symlinks=False)
    for extra in range(KEEP_CACHES + 1):  # more commits than are kept: pruning runs each time
        commit_more(index, [f"more{extra}"])
        open_vector_set(index.searcher(), field_of(index))
    assert (outside / "data.txt").read_text() == "keep me" and (root / "0000-old").is_symlink()
    assert len(cache._caches(root)) == KEEP_CACHES


def test_temp_folders_of_dead_writers_are_removed_on_open(index):
    root = index.path / "vectors" / "embedding"
    root.mkdir(parents=True, exist_ok=True)
    dead = root / f".tmp-{index.searcher().commit_id}-{dead_pid()}"
    (dead / "half").mkdir(parents=True)
    (dead / "half" / "index.faiss").write_bytes(b"\0" * 100)
    alive = root / f".tmp-othercommit-{os.getppid()}"  # a live process may still be writing it
    alive.mkdir()
    open_vector_set(index.searcher(), field_of(index))
    assert not dead.exists() and alive.exists()


def test_a_truncated_cache_that_still_loads_is_not_trusted(index):
    searcher = index.searcher()
    field = field_of(index)
    vs = open_vector_set(searcher, field)
    folder = index.path / "vectors" / "embedding" / searcher.commit_id
    small = VectorSet.build(vs.keys[:5], np.eye(5, 32, dtype=np.float32), vs.params)
    small.backend.save(folder)  # a consistent, loadable, 5-vector index.faiss + keys.npy in place of the real ones
    np.save(folder / "keys.npy", small.keys)
    meta = (folder / "meta.json").read_text().replace(f'"count": {N}', '"count": 5')
    (folder / "meta.json").write_text(meta)
    hits = build_pipeline("dense", index.searcher()).search("green tea and solar power", 20)
    assert len(hits) == 20
    assert len(VectorSet.load(folder)) == N  # rebuilt and cached again


def test_a_cache_stamped_with_another_commit_is_rebuilt(index):
    field = field_of(index)
    first = index.searcher()
    open_vector_set(first, field)
    commit_more(index, ["doc0"])  # same documents, one changed
    second = index.searcher()
    assert second.num_docs == first.num_docs
    root = index.path / "vectors" / "embedding"
    shutil.copytree(root / first.commit_id, root / second.commit_id)  # the old commit's cache under the new name
    vs = open_vector_set(second, field)
    assert vs.meta["commit_id"] == second.commit_id and vs.meta["built"] == "incremental"


def test_a_read_only_cache_folder_serves_searches_from_memory(index, monkeypatch):
    field = field_of(index)
    open_vector_set(index.searcher(), field)
    commit_more(index, ["ro1", "ro2", "ro3"])  # the cache on disk is now stale
    vectors = index.path / "vectors"
    before = sorted(str(p.relative_to(vectors)) for p in vectors.rglob("*"))
    modes = {p: p.stat().st_mode for p in [vectors, *vectors.rglob("*")] if p.is_dir()}
    for p in modes:
        p.chmod(0o555)
    if os.geteuid() == 0:  # root ignores permissions: fail the first write the way EACCES would
        real_mkdir = Path.mkdir

        def mkdir(self, *a, **kw):
            if vectors in self.parents and not self.exists():
                raise PermissionError(13, "Permission denied", str(self))
            return real_mkdir(self, *a, **kw)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    try:
        with pytest.warns(VectorCacheWarning, match="cannot write"):
            hits = build_pipeline("dense", index.searcher()).search("green tea", 30)
        assert len(hits) == N + 3 and {"ro1", "ro2", "ro3"} <= set(hits.ids)
        assert sorted(str(p.relative_to(vectors)) for p in vectors.rglob("*")) == before
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_warnings_do_not_fire_on_a_healthy_cache(index):
    with warnings.catch_warnings():
        warnings.simplefilter("error", VectorCacheWarning)
        open_vector_set(index.searcher(), field_of(index))
        open_vector_set(index.searcher(), field_of(index))
