"""The Guard middleware in-process: Host, Origin, key before body, content types, body caps on received
bytes (chunked or not), request ids, bounded metric labels; property-based over hostile headers.

Cases tried by the property tests are written to `.artifacts/guard-fuzz.json`."""
from __future__ import annotations

import json
import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from souk.serving.auth import Keys
from souk.serving.guard import HostPolicy
from support import FUZZ_SCALE, REPO

TRIED: Counter = Counter()
JSON = {"Content-Type": "application/json"}
ADMIN, SEARCH = "a" * 20, "s" * 20
SMALL = 4096  # the body limit of the apps under test here (a 16 MiB example per case would be slow)


@pytest.fixture(scope="module", autouse=True)
def report_cases():
    yield
    out = REPO / ".artifacts"
    out.mkdir(exist_ok=True)
    (out / "guard-fuzz.json").write_text(json.dumps({"cases": sum(TRIED.values()), "by_test": dict(TRIED)}, indent=1))


def make_client(index, monkeypatch=None, **kwargs):
    from fastapi.testclient import TestClient

    import souk.serving.app as app_module

    if monkeypatch is not None:
        monkeypatch.setattr(app_module, "MAX_BODY_BYTES", SMALL)
    return TestClient(app_module.create_app(index, **kwargs), base_url="http://127.0.0.1:8000")


@pytest.fixture(scope="module")
def guarded(served_index):
    """Keys on, Host checked against a loopback bind plus shop.example, one CORS origin, a 4 KiB body limit."""
    mp = pytest.MonkeyPatch()
    try:
        yield make_client(served_index, mp, keys=Keys(ADMIN, SEARCH), cors_origins=["https://shop.example"],
                          hosts=HostPolicy("127.0.0.1", ("shop.example",)))
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def plain(served_index):
    """An open app (no keys, any Host), the way tests and library users create it."""
    return make_client(served_index)


def auth(key=ADMIN):
    return {"Authorization": f"Bearer {key}"}


def docs_named(client, word):
    return client.get("/search", params={"q": word}, headers=auth()).json()["total"]


def test_host_policy_answers_the_bound_address_and_configured_names():
    loop = HostPolicy("127.0.0.1", ("shop.example",))
    assert all(loop.allows(h)
               for h in ["127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]:80", "shop.example", "shop.example."])
    assert not any(loop.allows(h)
                   for h in ["evil.example", "127.0.0.1.evil.example", "", None, "shop.example.evil", "10.0.0.1"])
    wild = HostPolicy("0.0.0.0")
    assert wild.allows("10.1.2.3:8000") and wild.allows("[fe80::1]") and not wild.allows("rebind.evil.example")
    assert HostPolicy("0.0.0.0", ("*",)).allows("anything.example")


def test_wrong_host_is_refused_before_anything_else(guarded):
    res = guarded.get("/health", headers={"Host": "evil.example"})
    assert res.status_code == 400 and res.json()["kind"] == "HostError" and res.json()["request_id"]
    assert guarded.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
    assert guarded.get("/health", headers={"Host": "shop.example"}).status_code == 200


def test_key_is_checked_before_the_body_is_read(guarded):
    read = []

    def body():
        read.append(1)
        yield b'{"q": "tea"}'

    res = guarded.post("/search", content=body(), headers=JSON)
    assert res.status_code == 401 and not read, "the body was never pulled"
    res = guarded.request("GET", "/search", content=body(), headers=auth(SEARCH))
    assert res.status_code == 400 and "no body" in res.json()["error"] and not read
    assert res.headers.get("connection") == "close"
    ok = guarded.post("/search", content=b'{"q": "tea"}', headers={**JSON, **auth(SEARCH)})
    assert ok.status_code == 200


def test_cross_origin_writes_and_non_json_bodies_are_refused(guarded):
    doc = json.dumps([{"code": "XO1", "name": {"en": "Xylophone origin test"}}])
    plain = guarded.post("/documents", content=doc,
                         headers={"Content-Type": "text/plain", "Origin": "http://evil.example", **auth()})
    assert plain.status_code == 403 and plain.json()["kind"] == "OriginError"
    assert guarded.post("/documents", content=doc, headers={"Content-Type": "text/plain", **auth()}).status_code == 415
    assert guarded.post("/documents", content=doc, headers={**JSON, "Origin": "null", **auth()}).status_code == 403
    assert guarded.post("/search", content=b'{"q": "x"}',
                        headers={"Content-Type": "application/x-ndjson", **auth()}).status_code == 415
    assert docs_named(guarded, "xylophone") == 0
    same = guarded.post("/documents", content=doc, headers={**JSON, "Origin": "http://127.0.0.1:8000", **auth()})
    cors = guarded.post("/documents", content=doc, headers={**JSON, "Origin": "https://shop.example", **auth()})
    assert same.status_code == 200 and cors.status_code == 200 and docs_named(guarded, "xylophone") == 1


def test_body_limit_counts_received_bytes_chunked_or_not(guarded):
    def chunks(n, size=1000):
        for _ in range(n):
            yield b" " * size

    over = guarded.post("/documents", content=chunks(10), headers={**JSON, **auth()})  # chunked, no Content-Length
    assert over.status_code == 413 and "4096" in over.json()["error"]
    declared = guarded.post("/documents", content=b"[]", headers={**JSON, **auth(), "Content-Length": str(SMALL + 1)})
    assert declared.status_code == 413
    search = guarded.post("/search", content=chunks(70), headers={**JSON, **auth()})
    assert search.status_code == 413  # /search has its own, smaller limit (64 KiB)
    under = guarded.post("/documents", content=iter([b"[", b" " * 3000, b"]"]), headers={**JSON, **auth()})
    assert under.status_code == 200


def test_errors_carry_a_request_id_and_no_server_paths(served_index, plain):
    """A synonym file the config points outside the index (here /proc/self/environ) is refused, and an
    index whose config breaks at search time answers with what failed and a request id, never the path."""
    from souk.errors import ConfigError
    from souk.query.synonyms import SynonymRewriter

    class Snapshot:
        path = served_index

    with pytest.raises(ConfigError, match="inside the index directory"):
        SynonymRewriter(Snapshot(), {"file": "/proc/self/environ"})
    with pytest.raises(ConfigError, match="inside the index directory"):
        SynonymRewriter(Snapshot(), {"file": "../../../../proc/self/environ"})
    res = plain.get("/search", params={"q": "x", "filter": "nope=1"})
    assert res.status_code == 400 and len(res.json()["request_id"]) == 16


def test_delete_answers_whether_the_id_existed_and_takes_slashes(plain):
    client = plain
    doc = {"code": "a/b/c", "name": {"en": "Slashed wombat"}}
    assert client.post("/documents", json=[doc]).status_code == 200
    first = client.delete("/documents/a/b/c")
    again = client.delete("/documents/a/b/c")
    assert first.status_code == 200 and first.json()["deleted"] == 1 and again.json()["deleted"] == 0
    assert client.delete("/documents/never-there").json()["deleted"] == 0


def test_ndjson_skips_only_bad_lines_and_keeps_u2028_inside_strings(plain):
    client = plain
    body = (
        '{"code": "N1", "name": {"en": "Numbat\u2028line"}}\n{bad\n{"code": "N2", "name": {"en": "Numbat two"}}\n'
    ).encode()
    nd = {"Content-Type": "application/x-ndjson"}
    assert client.post("/documents", content=body, headers=nd).status_code == 400  # on_error=fail: the batch
    res = client.post("/documents", params={"on_error": "skip"}, content=body, headers=nd).json()
    assert (
        res["written"] == 2
        and [r["record"] for r in res["rejected"]] == [2]
        and "line 2" in res["rejected"][0]["message"]
    )


def test_metric_labels_stay_bounded(plain):
    client = plain
    for i in range(60):
        client.request(f"M{i}X", f"/nowhere/{i}")
    text = client.get("/metrics").text
    assert 'method="OTHER",route="unmatched"' in text and "M1X" not in text and "/nowhere/1" not in text


# ---- property-based ----------------------------------------------------------------------------------
token = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-./+;= "), max_size=30)
content_types = st.sampled_from(["application/json", "application/x-ndjson", "text/plain",
                                 "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x", "application/json; charset=utf-8",
                                 "APPLICATION/JSON",
                                 "application/jsonx", "", "application/ndjson", "text/json"]) | token
hosts = st.sampled_from(["127.0.0.1:8000", "localhost", "shop.example", "evil.example", "127.0.0.1.nip.io", "[::1]", "",
                         "0.0.0.0", "shop.example:443", "SHOP.EXAMPLE", "xn--80ak6aa92e.com"]) | token
origins = st.none() | st.sampled_from(["http://127.0.0.1:8000", "https://shop.example", "http://evil.example", "null",
                                       ""]) | token
keys_sent = st.sampled_from([None, ADMIN, SEARCH, "wrong" * 4, ""])


@settings(max_examples=120 * FUZZ_SCALE, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]),
       path=st.sampled_from(["/search", "/documents", "/documents/zz", "/health"]),
       host=hosts, origin=origins, ctype=content_types, key=keys_sent,
       chunks=st.lists(st.binary(max_size=2000) | st.just(b'[{"code": "F1", "name": {"en": "fuzz"}}]'), max_size=4),
       chunked=st.booleans())
def test_hostile_headers_and_bodies_get_a_4xx_or_an_answer(guarded, method, path, host, origin, ctype, key, chunks,
                                                           chunked):
    """Whatever the Host, Origin, key, content type and (chunked) body: never a 5xx, every error JSON with
    a request id, a refused Host / Origin / type / key is refused in that order of precedence."""
    headers = {"Host": host, "Content-Type": ctype}
    if origin is not None:
        headers["Origin"] = origin
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    body = b"".join(chunks)
    res = guarded.request(method, path, headers=headers, content=iter(chunks) if chunked else body)
    TRIED["hostile_headers"] += 1
    assert res.status_code < 500, (method, path, headers, res.text[:200])
    if res.status_code >= 400:
        assert res.json()["request_id"], res.text
    if not HostPolicy("127.0.0.1", ("shop.example",)).allows(host):
        assert res.status_code == 400 and res.json()["kind"] == "HostError"
    elif method != "GET" and origin is not None and origin.strip().rstrip("/") != "https://shop.example" \
            and origin.strip().rstrip("/").lower() != f"http://{host}".lower():
        assert res.status_code == 403, res.text
    elif method != "GET" and key not in (ADMIN, SEARCH):
        assert res.status_code == 401, (method, path, headers, res.text)
    elif method in ("POST", "PUT", "PATCH") and ctype.split(";")[0].strip().lower() not in (
            "application/json", *(["application/x-ndjson", "application/ndjson"] if path != "/search" else [])):
        assert res.status_code == 415, res.text
    elif len(body) > SMALL:
        assert res.status_code == 413


@settings(max_examples=60 * FUZZ_SCALE, deadline=None, suppress_health_check=list(HealthCheck))
@given(sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=6), ndjson=st.booleans())
def test_chunked_bodies_are_capped_on_what_arrives(guarded, sizes, ndjson):
    """A chunked upload is refused with 413 exactly when the bytes received pass the limit."""
    ctype = "application/x-ndjson" if ndjson else "application/json"
    chunks = [b" " * n for n in sizes]
    res = guarded.post("/documents", content=iter(chunks), headers={"Content-Type": ctype, **auth()})
    TRIED["chunked_bodies"] += 1
    if sum(sizes) > SMALL:
        assert res.status_code == 413, res.text
    else:
        assert res.status_code in (200, 400), res.text  # blanks: an empty NDJSON batch, or not JSON


def test_a_synonym_file_turning_invalid_while_serving_leaks_nothing(tmp_path):
    """The issue's case: the file a manifest names turns invalid (here it holds a secret) while the server
    runs: searches keep answering with the last good rules, and no response quotes the path or contents."""
    from souk.index import Index
    from souk.query.synonyms import _watched
    from souk.schema import Schema

    toml = tmp_path / "schema.toml"
    toml.write_text('id = "id"\n[fields.id]\nkind = "keyword"\n[fields.title]\nkind = "text"\n'
                    '[query]\nsteps = ["syntax", "synonyms"]\n[query.synonyms]\nfile = "syn.txt"\n')
    path = tmp_path / "index"
    index = Index.create(path, Schema.load(toml))
    (path / "syn.txt").write_text("fridge, refrigerator\n")
    from souk.catalogs import Record

    with index.writer() as w:
        w.add([Record(1, {"id": "r1", "title": "steel refrigerator"})])
        w.commit()
    client = make_client(path)
    assert client.get("/search", params={"q": "fridge"}).json()["total"] == 1
    secret = "SOUK_ADMIN_KEY=hunter2hunter2hunter2"
    (path / "syn.txt").write_text(f"{secret}, \n")
    st = (path / "syn.txt").stat()
    os.utime(path / "syn.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    for _ in range(3):
        res = client.get("/search", params={"q": "fridge"})
        _watched(path / "syn.txt").wait(30)
        assert res.status_code == 200 and res.json()["total"] == 1
        assert "hunter2" not in res.text and str(tmp_path) not in res.text


@pytest.mark.parametrize("error", ["ConfigError", "IndexStateError", "ModelError", "DatasetError"])
def test_server_side_errors_name_what_failed_never_the_details(plain, monkeypatch, error):
    """An error from the server's own files (config, index, model, data) reaches the client as what
    failed plus a request id; its message (a path, a file's contents, a key) only goes to the log."""
    import souk.errors

    client = plain
    engine = client.app.state.engine

    def broken(*args, **kwargs):
        raise getattr(souk.errors, error)("/srv/secret/index/syn.txt: 'SOUK_ADMIN_KEY=hunter2hunter2' is not a rule")

    monkeypatch.setattr(engine, "search", broken)
    monkeypatch.setattr(engine, "is_lexical", lambda name: True)
    res = client.get("/search", params={"q": "tea"})
    assert res.status_code in (400, 503) and res.json()["kind"] == error and len(res.json()["request_id"]) == 16
    assert "hunter2" not in res.text and "/srv" not in res.text, res.text


def test_app_from_env_answers_the_bound_address_and_allowed_hosts(served_index, monkeypatch):
    """What `souk serve --host H --allowed-hosts N` hands its workers: H and N are answered, other names not."""
    import gc

    from fastapi.testclient import TestClient

    from souk.serving.app import app_from_env

    monkeypatch.setenv("SOUK_SERVE_INDEX", str(served_index))
    monkeypatch.setenv("SOUK_SERVE_HOST", "127.0.0.1")
    monkeypatch.setenv("SOUK_SERVE_ALLOWED_HOSTS", "search.shop.example, other.example")
    monkeypatch.setenv("SOUK_ADMIN_KEY", "")
    try:
        client = TestClient(app_from_env(), base_url="http://127.0.0.1:8000")
    finally:
        gc.unfreeze()
    assert client.get("/health", headers={"Host": "search.shop.example"}).status_code == 200
    assert client.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
    assert client.get("/health", headers={"Host": "shop.example"}).status_code == 400


def test_a_stalled_body_is_cut_off(monkeypatch):
    """A client that stops sending mid-body gets a 408 once the idle deadline passes (here 0.2 s)."""
    import asyncio

    import souk.serving.guard as guard

    monkeypatch.setattr(guard, "BODY_IDLE_TIMEOUT_S", 0.2)
    messages = [{"type": "http.request", "body": b"[", "more_body": True}]

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)

    async def read_all():
        capped = guard._capped(receive, 100)
        await capped()
        await capped()

    with pytest.raises(guard.BodyTimeout) as stalled:
        asyncio.run(read_all())
    assert stalled.value.status_code == 408
