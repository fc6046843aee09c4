"""Index state at the file-system boundary: odd --index paths, damaged or edited files, read-only
media, other users' indexes and full disks all end in one-line IndexStateErrors (issue 8)."""
import glob
import json
import os
import resource
import shutil
import signal
import subprocess
import sys

import pytest
import tantivy

from souk.catalogs import Record
from souk.errors import IndexStateError
from souk.index import Index
from souk.index.searcher import SearchRequest
from souk.index.store import GuardedSearcher, guard
from souk.schema import Schema
from support import FIXTURES, REPO, SOUK

SCHEMA = Schema.from_dict({"id": "sku", "fields": {"sku": {"kind": "keyword"}, "title": {"kind": "text"},
                                                  "brand": {"kind": "keyword"}, "price": {"kind": "number"}}})
ROWS = [{"sku": str(i), "title": f"red shoe {i} milk tea", "brand": f"b{i % 3}", "price": i} for i in range(40)]
# Dropping these capabilities makes root obey file modes, so read-only directories are read-only to it.
NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]


def build(path, rows=ROWS):
    index = Index.create(path, SCHEMA)
    with index.writer() as w:
        w.add([Record(i + 1, r) for i, r in enumerate(rows)])
        w.commit()
    return index


def as_plain_user(*commands):
    """Run CLI commands in one process that cannot write what file modes forbid (root without DAC
    override, or a plain user); returns (exit status, stdout, stderr) of each."""
    prefix = NO_OVERRIDE if os.geteuid() == 0 else []
    if prefix and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot drop the permission override")
    script = ("import json, sys; from support import run_main\n"
              "for args in json.loads(sys.argv[1]):\n"
              "    p = run_main(*args, check=False); print(json.dumps([p.returncode, p.stdout, p.stderr]))\n")
    proc = subprocess.run([*prefix, sys.executable, "-c", script, json.dumps(commands)], capture_output=True, text=True,
                          cwd=REPO, timeout=120, env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"})
    assert proc.returncode == 0, proc.stderr
    return [tuple(json.loads(line)) for line in proc.stdout.splitlines()]


@pytest.fixture
def index(tmp_path):
    return build(tmp_path / "ix")


def test_missing_keyword_dir_and_edited_manifest(index):
    edited = index.path.parent / "edited"
    shutil.copytree(index.path, edited)
    shutil.rmtree(index.path / "keyword")
    with pytest.raises(IndexStateError, match="keyword index missing under .*: rebuild it"):
        Index.open(index.path)
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["schema"]["fields"]["price"]["kind"] = "keyword"
    (edited / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexStateError,
                       match="manifest says field 'price' has kind 'keyword', but the keyword index holds a f64"):
        Index.open(edited)
    (edited / "manifest.json").write_text("[1, 2]")
    with pytest.raises(IndexStateError, match="is corrupt"):
        Index.open(edited)


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "f").write_text("x") and d / "f", "is a file, not an index directory"),
    (lambda d: (d / "f").write_text("x") and d / "f" / "sub", "lies under .*f, which is a file"),
    (lambda d: (d / "dangling").symlink_to(d / "nowhere") or d / "dangling",
     "is a symlink to .*nowhere, which does not exist"),
    (lambda d: ((d / "a").symlink_to(d / "b"), (d / "b").symlink_to(d / "a")) and d / "a", "is a symlink loop"),
])
def test_index_paths_that_cannot_be_directories(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(IndexStateError, match=message):
        Index.create(path, SCHEMA)
    with pytest.raises(IndexStateError, match=message):
        Index.open(path)


def test_creation_in_a_read_only_directory_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    [(code, _, err)] = as_plain_user(["index", str(FIXTURES / "products.jsonl"), "--index", str(ro / "ix")])
    assert (
        code == 2 and err.strip().splitlines()[-1] == f"error: cannot create an index in {ro / 'ix'}: Permission denied"
    )
    assert "Traceback" not in err and not (ro / "ix").exists()


def test_read_only_index_can_be_searched_and_stat_ed_without_a_lock(tmp_path):
    ix = tmp_path / "ix"
    build(ix)
    for lock in glob.glob(str(ix / "keyword" / ".tantivy-*.lock")):
        os.unlink(lock)  # as on a copy to read-only media: no lock files to reuse either
    for root, dirs, files in os.walk(ix):
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o555 if name in dirs else 0o444)
    ix.chmod(0o555)
    try:
        search, stats, write = as_plain_user(["search", "--index", str(ix), "milk", "--filter", "brand=B1", "--json"],
                                             ["stats", "--index", str(ix), "--json"],
                                             ["delete", "--index", str(ix), "1"])
        assert search[0] == 0, search[2]
        res = json.loads(search[1].splitlines()[-1])
        assert res["total"] == 13 and {h["doc"]["brand"][0] for h in res["hits"]} == {"b1"}
        assert stats[0] == 0 and json.loads(stats[1].splitlines()[-1])["docs"] == 40
        assert write[0] == 2 and "can only be read here" in write[2] and "Traceback" not in write[2]
        assert not [n for n in os.listdir(ix / "keyword") if n.endswith(".lock")]  # reading took no lock there
    finally:
        for root, dirs, _ in os.walk(ix):
            os.chmod(root, 0o755)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the index to another user")
def test_another_users_index_can_be_read(tmp_path):
    ix = tmp_path / "ix"
    build(ix)
    modes = {p: oct(os.stat(p).st_mode & 0o777) for p in [ix / "manifest.json", ix / "keyword" / "meta.json"]}
    assert all(m in ("0o644", "0o664", "0o666") for m in modes.values()), modes  # not tantivy's private 0600
    for root, dirs, files in os.walk(ix):
        for name in [root, *(os.path.join(root, f) for f in files)]:
            os.chown(name, 54321, 54321)
    [(code, out, err)] = as_plain_user(["search", "--index", str(ix), "shoe", "-k", "3", "--json"])
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["total"] == 40


def test_reader_in_process_is_marked_read_only(tmp_path, monkeypatch):
    ix = tmp_path / "ix"
    build(ix)
    import souk.index.store as store

    real_open = tantivy.Index.open
    calls = []

    def locked_out(path):  # the first open (in the index dir itself) fails like on read-only media
        calls.append(path)
        if len(calls) == 1:
            raise ValueError('Failed to acquire Lockfile: IoError(Os { code: 30, kind: ReadOnlyFilesystem, message: '
                             '"Read-only file system" }). None')
        return real_open(path)

    monkeypatch.setattr(store.tantivy.Index, "open", staticmethod(locked_out))
    index = Index.open(ix)
    assert index.read_only and len(calls) == 2 and calls[1] != str(ix / "keyword")
    assert index.searcher().search(SearchRequest("shoe", k=1)).total == 40
    with pytest.raises(IndexStateError, match="can only be read here"):
        index.writer()


def test_tantivy_panics_and_corruption_become_index_state_errors(index):
    raw = index._tantivy._raw
    raw.reload()
    guarded = GuardedSearcher(raw.searcher(), index.path)
    with pytest.raises(IndexStateError, match="the keyword index is damaged .*index out of bounds.*rebuild it"):
        guarded.doc(tantivy.DocAddress(99, 0))  # a Rust panic (PanicException is no Exception)
    with pytest.raises(IndexStateError, match="Data corrupted: x; the index may be damaged"):
        with guard(index.path):
            raise ValueError("Data corrupted: x")
    with pytest.raises(ValueError, match="An invalid argument"):  # request errors are not blamed on the files
        with guard(index.path):
            raise ValueError("An invalid argument was passed: k")


def test_damaged_term_dictionary_gives_a_clean_error(index):
    for term in glob.glob(str(index.path / "keyword" / "*.term")):
        data = bytearray(open(term, "rb").read())
        data[-40:] = b"\xff" * 40
        with open(term + ".tmp", "wb") as fh:
            fh.write(data)
        os.replace(term + ".tmp", term)
    with pytest.raises(IndexStateError, match="cannot (open|read) the keyword index"):
        Index.open(index.path).searcher().search(SearchRequest("shoe", k=3, facets=["brand"]))


def test_full_disk_keeps_the_last_commit(tmp_path):
    ix = tmp_path / "ix"
    build(ix, ROWS[:5])
    catalog = tmp_path / "more.jsonl"
    catalog.write_text("".join(json.dumps({"sku": f"m{i}", "title": f"word{i} " * 20, "price": i}) + "\n"
                               for i in range(6_000)))

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, like ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    proc = subprocess.run([*SOUK, "index", str(catalog), "--index", str(ix)], capture_output=True, text=True,
                          preexec_fn=small_files, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {ix}: cannot write the keyword index") and "the last commit is intact" in last
    assert Index.open(ix).searcher().num_docs == 5


def test_discard_removes_only_what_create_made(tmp_path):
    nested = tmp_path / "a" / "b" / "ix"
    index = Index.create(nested, SCHEMA)
    index.discard()
    assert not (tmp_path / "a").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    Index.create(empty, SCHEMA).discard()
    assert empty.is_dir() and not any(empty.iterdir())
    with pytest.raises(IndexStateError, match="not created by this process"):
        Index.open(build(tmp_path / "kept").path).discard()
