"""Schemathesis reads the API's OpenAPI schema and fuzzes every operation: no input may yield a 500;
each generated request is also sent again reframed (chunked body, foreign Host, text/plain body).

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
    (out / "api-fuzz.json").write_text(json.dumps({"cases": sum(n for k, n in TRIED.items()
                                                                if not k.startswith("variant ")),
                                                    "by_operation": dict(TRIED)}, indent=1))


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=40 * FUZZ_SCALE, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_yields_a_server_error(case):
    response = case.call()
    TRIED[f"{case.method} {case.path}"] += 1
    assert response.status_code < 500, (case.method, case.path, case.query, case.body, response.text[:300])
    if response.status_code >= 400:
        assert "error" in response.json(), response.text[:300]


@pytest.fixture(scope="module")
def framed_client(served_index):
    """The same API behind the Host check of a loopback server, for requests reframed by the test below."""
    from fastapi.testclient import TestClient

    from souk.serving.app import create_app
    from souk.serving.guard import HostPolicy

    return TestClient(create_app(served_index, hosts=HostPolicy("127.0.0.1")), base_url="http://127.0.0.1:8000")


VARIANTS = ("chunked", "host", "content-type", "chunked")


@pytest.mark.slow
@schema.parametrize()
# half the budget of the fuzz above: each case is sent twice, and what is tested is the framing (the variants
# take turns, so each still meets every operation several times), not the search for a bad input
@settings(max_examples=20 * FUZZ_SCALE, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_reframed_stay_4xx(case, framed_client):
    """Each generated request sent again with hostile framing, in turn: its body chunked (no Content-Length),
    a foreign Host header (DNS rebinding), or a text/plain content type. Never a 5xx; a foreign Host is
    always a 400 and a non-JSON write always a 415; a chunked search answers as the same search unchunked."""
    kwargs = case.as_transport_kwargs()
    kwargs.pop("cookies", None)
    variant = VARIANTS[TRIED[f"reframed {case.method} {case.path}"] % len(VARIANTS)]
    TRIED[f"reframed {case.method} {case.path}"] += 1
    headers = {k: v for k, v in kwargs.pop("headers").items() if k.lower() not in ("host", "content-length")}
    headers = {k: v for k, v in headers.items() if v.isascii()}  # what an HTTP client can send at all
    body = json.dumps(kwargs.pop("json")).encode() if "json" in kwargs else kwargs.pop("data", None)
    if isinstance(body, str):
        body = body.encode()
    method, url = kwargs.pop("method"), kwargs.pop("url")
    plain = framed_client.request(method, url, headers=headers, content=body, **kwargs)
    if variant == "host":
        res = framed_client.request(method, url, headers={**headers, "Host": "rebind.evil.example"}, content=body,
                                    **kwargs)
        assert res.status_code == 400 and res.json()["kind"] == "HostError", res.text[:300]
    elif variant == "content-type" and method in ("POST", "PUT", "PATCH"):
        res = framed_client.request(method, url, headers={**headers, "Content-Type": "text/plain"}, content=body,
                                    **kwargs)
        assert res.status_code in (401, 403, 415), res.text[:300]
    else:
        pieces = [body[i:i + 7] for i in range(0, len(body or b""), 7)] if body else []
        res = framed_client.request(method, url, headers=headers, content=iter(pieces), **kwargs)
        if method == "POST" and case.path == "/search":
            assert res.status_code == plain.status_code, (res.text[:300], plain.text[:300])
    TRIED[f"variant {variant}"] += 1
    assert plain.status_code < 500 and res.status_code < 500, (method, url, variant, res.text[:300])
    if res.status_code >= 400:
        assert "error" in res.json() and res.json()["request_id"], res.text[:300]
