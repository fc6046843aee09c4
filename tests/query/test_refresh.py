"""Background rebuilds of per-commit resources: the previous version serves until the new one is ready."""
from __future__ import annotations

import threading

import pytest

from souk.query.refresh import Refreshing, builds_under_way, refreshing


class Snapshot:  # the seam: a searcher is only asked for its commit id here
    def __init__(self, commit_id):
        self.commit_id = commit_id


def test_first_get_builds_then_newer_commits_build_in_the_background():
    gate, built = threading.Event(), []

    def build(snapshot):
        if built:
            assert gate.wait(30)
        built.append(snapshot.commit_id)
        return f"v-{snapshot.commit_id}"

    source = Refreshing("thing", build)
    assert source.get(Snapshot("c1")) == "v-c1"
    assert source.get(Snapshot("c2")) == "v-c1" and source.building  # served at once, built behind
    assert source.get(Snapshot("c3")) == "v-c1"
    gate.set()
    assert source.wait(30)
    assert source.get(Snapshot("c3")) == "v-c3" and built[0] == "c1" and built[-1] == "c3"
    assert not source.building


def test_a_failed_rebuild_keeps_the_previous_version():
    def build(snapshot):
        if snapshot.commit_id == "bad":
            raise RuntimeError("disk on fire")
        return snapshot.commit_id

    source = Refreshing("fragile", build)
    assert source.get(Snapshot("good")) == "good"
    source.get(Snapshot("bad"))
    assert source.wait(30) and source.get(Snapshot("bad")) == "good"


def test_the_first_build_error_reaches_the_caller():
    def build(snapshot):
        raise ValueError("no lexicon")

    with pytest.raises(ValueError):
        Refreshing("x", build).get(Snapshot("c1"))


def test_a_prepare_step_runs_in_a_child_process(tmp_path):
    """`prepare` runs out of process (here: makes a directory); then `build` loads what it made."""
    out = tmp_path / "made"
    source = refreshing(("test-prepare", str(tmp_path)), "prepared", lambda s: "made" if out.exists() else "none",
                        ("os:mkdir", [str(out)]))
    assert source.get(Snapshot("c1")) == "none"
    source.get(Snapshot("c2"))
    assert "prepared" in builds_under_way() or source.wait(60)
    assert source.wait(60) and out.is_dir() and source.get(Snapshot("c2")) == "made"
