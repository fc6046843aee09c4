"""`souk serve`: the HTTP API and the search page over one index."""
from __future__ import annotations

import ipaddress
import os
import socket
import time
from pathlib import Path

import typer

from souk.cli.output import err_console
from souk.errors import ConfigError


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names that resolve only to them (e.g. localhost)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        index: Path = typer.Option(..., "--index", help="Index directory."),
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(8000, "--port"),
        workers: int = typer.Option(1, "--workers", help="Server processes (writes are serialized per index)."),
        cors: str = typer.Option("", "--cors", help="Comma-separated origins allowed to call the API from a browser."),
        warm: str = typer.Option("keyword", "--warm",
                                 help="Pipelines to load and run once before serving (e.g. keyword,hybrid)."),
        allowed_hosts: str = typer.Option("", "--allowed-hosts", help="Comma-separated Host names answered besides "
                                          "the bound address (e.g. search.example.com); '*' answers any (DNS "
                                          "rebinding check off)."),
        interleave: str = typer.Option("", "--interleave",
                                       help="A,B: team-draft interleave two pipelines on searches that name none (souk "
                                            "experiments reports)."),
        share: float = typer.Option(1.0, "--share", help="Share of those searches interleaved (0..1]."),
        explore: float = typer.Option(0.0, "--explore",
                                      help="Share of the searches naming no pipeline (and not interleaved) "
                                      "shown with one document from below the page moved onto it, for learning "
                                      "from clicks (0: none)."),
    ) -> None:
        """Serve the search API (docs at /docs) and the search page (at /) until Ctrl-C.

        Keys: SOUK_ADMIN_KEY (writes) and SOUK_SEARCH_KEY (search only), sent as `Authorization: Bearer KEY`.
        Without keys the server is open and binds to loopback only."""
        from souk.engine import Engine
        from souk.serving.auth import Keys
        from souk.serving.events import Experiment, Exploration
        from souk.serving.server import serve

        keys = Keys.from_env()
        if not keys.enabled and not is_loopback(host):
            raise ConfigError(f"refusing to serve {host} without API keys: set SOUK_ADMIN_KEY (and "
                              "SOUK_SEARCH_KEY), or bind 127.0.0.1")
        if not 1 <= workers <= 64:
            raise ConfigError(f"--workers: expected 1..64, got {workers}")
        if not 0 < port < 65536:
            raise ConfigError(f"--port: expected 1..65535, got {port}")
        engine = Engine.open(index)  # fail here, in one line, on a bad index or config
        experiment = Experiment.parse(interleave, share)
        Exploration.parse(explore)  # a bad share fails here
        if experiment is not None:
            for name in (experiment.a, experiment.b):
                engine.pipeline(name)  # a pipeline the index cannot run fails here, naming it
            warm = ",".join(dict.fromkeys([*warm.split(","), experiment.a, experiment.b]))
        os.environ.update({"SOUK_SERVE_INDEX": str(index.resolve()), "SOUK_SERVE_WARM": warm, "SOUK_SERVE_CORS": cors,
                           "SOUK_SERVE_ALLOWED_HOSTS": allowed_hosts,
                           "SOUK_SERVE_INTERLEAVE": experiment.name if experiment else "",
                           "SOUK_SERVE_SHARE": str(share),
                           "SOUK_SERVE_EXPLORE": str(explore)})
        mode = "API keys required" if keys.enabled else "open, no API keys: loopback only"
        started = time.perf_counter()
        err_console.print(f"souk: loading {index} (warming {warm or 'nothing'}) ...", soft_wrap=True)

        def ready() -> None:  # called once the port answers: models and pipelines are loaded
            err_console.print(f"souk: serving {index} on http://{host}:{port}/ ({mode}; ready in "
                              f"{time.perf_counter() - started:.1f}s); API docs at /docs; Ctrl-C stops", soft_wrap=True)

        try:
            serve(host, port, workers, on_ready=ready)
        except KeyboardInterrupt:
            pass
