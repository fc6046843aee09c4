"""Test helpers importable from every test module (`from support import ...`): paths, skips, the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
SHARED = (REPO.parent / "shared").resolve()
DATA = SHARED / "data"
SOUK = [sys.executable, "-m", "souk"]
# property-based tests multiply their example budgets by this (`SOUK_FUZZ_SCALE=20 pytest ...` searches deeper)
FUZZ_SCALE = max(1, int(os.environ.get("SOUK_FUZZ_SCALE", "1") or 1))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def needs_shared(*parts: str):
    """Skip unless ../shared/<parts> exists (a fresh clone has no ../shared)."""
    path = SHARED.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"needs {path} (the shared data beside the repo), absent here")


def run_souk(
    *args: str, check: bool = True, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run the real `souk` CLI in a subprocess and return the completed process."""
    proc = subprocess.run([*SOUK, *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"souk {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc




class Prebuild:
    """Long `souk` commands test modules declare (`PREBUILD = {name: args}`; "{out}" in args is a fresh folder),
    run one after another in the background at the lowest CPU priority from the moment the session has collected
    a test of that module: they take the core time other tests leave idle (the suite waits on processes, servers
    and browsers for about 0.8 of its 2 cores) instead of running after them. Those modules' tests run last
    (conftest) and call `wait`. Misuse: a command whose result a test changes (each name runs once a session)."""

    QUEUE: dict[str, "Prebuild"] = {}
    LOCK = threading.Lock()
    STOPPED = threading.Event()

    def __init__(self, name: str, args: tuple[str, ...]):
        import tempfile

        self.name, self.out = name, Path(tempfile.mkdtemp(prefix=f"souk-prebuild-{name}-"))
        self.args = tuple(a.replace("{out}", str(self.out)) for a in args)
        self.done = threading.Event()
        self.code: int | None = None
        self.proc: subprocess.Popen | None = None

    def run(self) -> None:
        try:
            with Prebuild.LOCK:  # the session may have ended (stop_all) while an earlier command ran
                if Prebuild.STOPPED.is_set():
                    return
                with (self.out / "stdout.txt").open("w") as out, (self.out / "stderr.txt").open("w") as err:
                    self.proc = subprocess.Popen(["nice", "-n", "19", *SOUK, *self.args], cwd=REPO, stdout=out,
                                                 stderr=err)
            self.code = self.proc.wait()
        except OSError as e:  # no process started: its waiters fail at once with the reason, not after the timeout
            (self.out / "stderr.txt").write_text(f"could not start: {e}\n")
            self.code = -1
        finally:
            self.done.set()

    @classmethod
    def start(cls, jobs: dict[str, tuple[str, ...]]) -> None:
        """Queue `jobs` (names already queued are skipped) and run them in turn on one background thread."""
        queued = [cls(n, a) for n, a in jobs.items() if n not in cls.QUEUE]
        cls.QUEUE.update((j.name, j) for j in queued)
        threading.Thread(target=lambda: [j.run() for j in queued], daemon=True, name="prebuild").start()

    @classmethod
    def wait(cls, name: str, timeout: float = 1800) -> Path:
        """The finished command's "{out}" folder (with its stdout.txt and stderr.txt); raises with its output
        when it failed."""
        job = cls.QUEUE[name]
        if not job.done.wait(timeout):
            raise AssertionError(f"souk {' '.join(job.args)} still running after {timeout} s")
        if job.code != 0:
            said = (job.out / "stdout.txt").read_text()[-1500:] + (job.out / "stderr.txt").read_text()[-1500:]
            raise AssertionError(f"souk {' '.join(job.args)} failed ({job.code}):\n{said}")
        return job.out

    @classmethod
    def last_json(cls, name: str, timeout: float = 1800) -> dict:
        """The JSON object on the last line of the finished command's stdout."""
        import json

        return json.loads((cls.wait(name, timeout) / "stdout.txt").read_text().strip().splitlines()[-1])

    @classmethod
    def stop_all(cls) -> None:
        import shutil

        with cls.LOCK:
            cls.STOPPED.set()
            for job in cls.QUEUE.values():
                if job.proc is not None and job.proc.poll() is None:
                    job.proc.kill()
                    job.proc.wait()
        for job in cls.QUEUE.values():
            shutil.rmtree(job.out, ignore_errors=True)
        cls.QUEUE.clear()


def run_main(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `souk ARGS` through the real entry point in this process (no interpreter start-up, so
    cheaper than `run_souk`); stdout, stderr and the exit status come back as from a subprocess."""
    import contextlib
    import io

    from souk.cli.main import main

    out, err, argv, code = io.StringIO(), io.StringIO(), sys.argv, 0
    sys.argv = ["souk", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        sys.argv = argv
    proc = subprocess.CompletedProcess(["souk", *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"souk {' '.join(args)} failed ({code}):\n{proc.stdout}\n{proc.stderr}")
    return proc


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
ARTIFACTS = REPO / ".artifacts"  # screenshots kept by browser tests (ignored by git)


def browser_or_skip():
    """Playwright's sync API, or skip when Debian's chromium or playwright is absent."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent; install it with `apt-get install chromium`")
    return pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index, port: int, admin_key: str = "", search_key: str = "", args: tuple[str, ...] = ()):
    """A real `souk serve` over `index` on loopback `port`, returned once /health answers (stderr piped for
    the failure message). Misuse: leaving it running; stop it with terminate() and wait()."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    env = {**os.environ, "SOUK_ADMIN_KEY": admin_key, "SOUK_SEARCH_KEY": search_key}
    proc = subprocess.Popen([sys.executable, "-m", "souk", "serve", "--index", str(index), "--port", str(port),
                             *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode())
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start")


def sign_test_p(wins_a: int, wins_b: int) -> float:
    """Two-sided exact sign test of wins_a against wins_b, by hand (the reference for the interleaving tests)."""
    import math

    n = wins_a + wins_b
    if wins_a == wins_b:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(wins_a, wins_b) + 1)) / 2 ** n)
