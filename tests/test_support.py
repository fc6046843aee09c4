"""The test helpers' own contracts: a background prebuild that cannot start fails its waiters at once."""
import shutil
import subprocess

import pytest

from support import Prebuild


def test_a_prebuild_that_cannot_start_fails_its_waiters_with_the_reason(monkeypatch):
    def no_process(*args, **kwargs):
        raise FileNotFoundError("nice: not found")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    job = Prebuild("cannot-start", ("--version",))
    monkeypatch.setitem(Prebuild.QUEUE, job.name, job)
    try:
        job.run()
        with pytest.raises(AssertionError, match="nice: not found"):
            Prebuild.wait(job.name, timeout=1)
    finally:
        shutil.rmtree(job.out, ignore_errors=True)
