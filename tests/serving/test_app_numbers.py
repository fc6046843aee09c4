"""Hostile numbers over HTTP: integers beyond float range or Python's 4300-digit limit are a per-record
error (422, or skipped with on_error=skip), never a 500."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _doc(code: str, price: str) -> str:
    return f'{{"code": "{code}", "name": {{"en": "Numbat bar {code}"}}, "prices": [{{"price": {price}}}]}}'


@pytest.mark.parametrize("literal", ["9" * 5000, "-" + "9" * 5000, "9" * 400, str(2 ** 1024), "1e400"])
def test_an_integer_beyond_range_is_a_record_error_and_skip_keeps_the_rest(client, literal):
    before = client.get("/health").json()["docs"]
    body = "[" + _doc("NB1", "2.5") + "," + _doc("NB2", literal) + "]"
    res = client.post("/documents", content=body.encode(), headers={"Content-Type": "application/json"})
    assert res.status_code == 422 and res.json()["problems"][0]["record"] == 2
    assert client.get("/health").json()["docs"] == before
    skipped = client.post("/documents", params={"on_error": "skip"}, content=body.encode(),
                          headers={"Content-Type": "application/json"})
    assert (
        skipped.status_code == 200 and skipped.json()["written"] == 1 and skipped.json()["rejected"][0]["record"] == 2
    )
    ndjson = client.post("/documents", content=(_doc("NB3", literal) + "\n").encode(),
                         headers={"Content-Type": "application/x-ndjson"})
    assert ndjson.status_code == 422


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(digits=st.integers(1, 6000), negative=st.booleans(), where=st.sampled_from(["price", "code", "name", "extra"]))
def test_property_integers_of_any_size_anywhere_never_give_a_500(client, digits, negative, where):
    literal = ("-" if negative else "") + "7" * digits
    doc = {"price": _doc("NP1", literal), "code": f'{{"code": {literal}, "name": {{"en": "x"}}}}',
           "name": f'{{"code": "NP2", "name": {{"en": {literal}}}}}',
           "extra": f'{{"code": "NP3", "name": {{"en": "x"}}, "unmapped": {literal}}}'}[where]
    res = client.post("/documents", content=("[" + doc + "]").encode(), headers={"Content-Type": "application/json"})
    assert res.status_code in (200, 422), res.text
    if digits > 309 and where != "extra":
        assert res.status_code == 422 and "digits is beyond the range of numbers" in res.text
