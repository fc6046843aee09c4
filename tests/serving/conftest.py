"""A writable copy of the demo index per test module, and API clients over it."""
from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="module")
def served_index(demo_index, tmp_path_factory):
    path = tmp_path_factory.mktemp("served") / "index"
    shutil.copytree(demo_index, path)
    return path


@pytest.fixture(scope="module")
def client(served_index):
    from fastapi.testclient import TestClient

    from souk.serving.app import create_app

    return TestClient(create_app(served_index))
