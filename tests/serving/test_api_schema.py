"""Schemathesis reads the API's OpenAPI schema and fuzzes every operation: no input may yield a 500.

The cases tried per operation are written to `.artifacts/api-fuzz.json`."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from support import FUZZ_SCALE, REPO

TRIED: Counter = Counter()


@pytest.fixture(scope="module")
def api_schema(served_index):
    from souk.serving.app import create_app

    return schemathesis.openapi.from_asgi("/openapi.json", create_app(served_index))


@pytest.fixture(scope="module", autouse=True)
def report_cases():
    yield
    out = REPO / ".artifacts"
    out.mkdir(exist_ok=True)
    (out / "api-fuzz.json").write_text(json.dumps({"cases": sum(TRIED.values()), "by_operation": dict(TRIED)}, indent=1))


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=40 * FUZZ_SCALE, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_yields_a_server_error(case):
    response = case.call()
    TRIED[f"{case.method} {case.path}"] += 1
    assert response.status_code < 500, (case.method, case.path, case.query, case.body, response.text[:300])
    if response.status_code >= 400:
        assert "error" in response.json(), response.text[:300]
