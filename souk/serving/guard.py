"""What a hostile HTTP client meets before any route runs: one ASGI middleware, checks in this order.

1. Host: the `Host` header must name the bound address or a configured host (DNS rebinding: a page on
   evil.example whose name resolves to 127.0.0.1 sends `Host: evil.example`) -> 400.
2. For methods that carry a body (anything but GET, HEAD, OPTIONS):
   `Origin` must be absent (not a browser), this server's own origin, or a `--cors` origin -> 403;
   the API key is checked here, before a byte of the body is read -> 401 (`Connection: close`, so
   the rest of an unread upload is never read either); `Content-Type` must be JSON (or NDJSON where a
   route takes it) -> 415; a declared `Content-Length` over the route's limit -> 413.
3. The body is streamed through a counter: the route's limit applies to the bytes actually received,
   chunked or not (413), and a client that stops sending mid-body is cut off after
   `BODY_IDLE_TIMEOUT_S` (408).
4. Every request gets an id (`request_id` in error bodies; the server log carries the details).
5. Metrics are recorded with bounded labels: unknown methods fold into `OTHER`, unrouted paths
   into `unmatched`.

`GuardedH11` is uvicorn's h11 protocol with a deadline on the request head (slow-header clients and
connections that never send a request are closed after `HEAD_TIMEOUT_S`).
Misuse: mounting an app or route outside this middleware (its body counter is what enforces the limits;
`request.body()`, `request.stream()` and FastAPI's own body parsing all read through it).
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, MutableMapping

from starlette.exceptions import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from souk.limits import BODY_IDLE_TIMEOUT_S, HEAD_TIMEOUT_S

log = logging.getLogger("souk.serving")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
KNOWN_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"})


@dataclass(frozen=True)
class Route:
    """What a body-carrying request to a path may send: its size limit and content types."""

    limit: int
    types: frozenset[str]


@dataclass
class HostPolicy:
    """Which `Host` header values this server answers.

    `bound`: the address the server listens on; a loopback address also answers `localhost` and the
    other loopback literals, a wildcard address (0.0.0.0, ::) answers any IP literal. `names`: extra
    host names (`--allowed-hosts`); `*` allows any."""

    bound: str = "127.0.0.1"
    names: tuple[str, ...] = ()
    _exact: set[str] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self):
        self._exact = {_host_only(n) for n in self.names if n != "*"}
        self._exact.add(_host_only(self.bound))
        self._any = "*" in self.names
        self._wildcard = self.bound in ("0.0.0.0", "::", "")
        if _loopback(self.bound):
            self._exact |= {"localhost", "127.0.0.1", "::1"}

    def allows(self, host_header: str | None) -> bool:
        if self._any:
            return True
        if not host_header:
            return False
        host = _host_only(host_header)
        if host in self._exact:
            return True
        if self._wildcard:
            try:
                ipaddress.ip_address(host)
                return True
            except ValueError:
                return False
        return False


def _host_only(value: str) -> str:
    """The host part of a Host header value, lower case, brackets and port removed."""
    value = value.strip().lower().rstrip(".")
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body over {limit} bytes", headers={"Connection": "close"})


class BodyTimeout(HTTPException):
    def __init__(self):
        super().__init__(408, f"request body stalled for {BODY_IDLE_TIMEOUT_S:.0f} s", headers={"Connection": "close"})


def request_id(scope: MutableMapping[str, Any]) -> str:
    """The id of this request (set by `Guard`; a fresh one outside it)."""
    return scope.setdefault("souk.request_id", secrets.token_hex(8))


def error_body(message: str, kind: str, scope: MutableMapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {"error": message, "kind": kind, "request_id": request_id(scope), **extra}


class Guard:
    """ASGI middleware doing the checks of this module's docstring, and recording metrics."""

    def __init__(self, app: Any, metrics: Any, keys: Any, hosts: HostPolicy | None, cors_origins: Iterable[str],
                 routes: dict[str, Route], default: Route):
        self.app, self.metrics, self.keys, self.hosts = app, metrics, keys, hosts
        self.cors = {o.rstrip("/") for o in cors_origins}
        self.routes, self.default = routes, default

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        request_id(scope)
        status = [500]
        started = [False]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                started[0] = True
            await send(message)

        headers: dict[bytes, bytes] = {}
        for k, v in scope.get("headers", []):
            headers.setdefault(k, v)  # the first of repeated headers
        route = self.routes.get(scope.get("path", ""), self.default)
        refusal = self._refusal(scope, headers, route)
        try:
            if refusal is not None:
                code, message, kind, extra = refusal
                await _respond(code, error_body(message, kind, scope), sending, extra)
            else:
                await self.app(scope, _capped(receive, route.limit), sending)
        except HTTPException as e:  # raised by the body counter where no handler turned it into a response
            if started[0]:
                raise
            await _respond(e.status_code, error_body(str(e.detail), "HTTPError", scope), sending,
                           dict(e.headers or {}))
        finally:
            matched = scope.get("route")
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
            self.metrics.observe(method, getattr(matched, "path", "unmatched"), status[0], time.perf_counter() - t0)

    def _refusal(self, scope: dict, headers: dict[bytes, bytes], route: Route) -> tuple[int, str, str, dict] | None:
        host = headers.get(b"host", b"").decode("latin-1")
        method = scope["method"]
        has_body = b"transfer-encoding" in headers or headers.get(b"content-length", b"0").strip() not in (b"0", b"")
        close = {"Connection": "close"} if has_body else {}
        if self.hosts is not None and not self.hosts.allows(host):
            log.info("request %s: Host %r refused", request_id(scope), host[:200])
            return 400, "this server does not answer for that Host; see souk serve --allowed-hosts", "HostError", close
        if method in SAFE_METHODS:  # reads carry no body: one that does would be read (and dropped) after the answer
            return (400, f"{method} requests carry no body", "HTTPError", close) if has_body else None
        origin = headers.get(b"origin")
        if origin is not None and not self._origin_ok(origin.decode("latin-1"), host, scope):
            return 403, "cross-origin writes are refused; allow the origin with souk serve --cors", "OriginError", close
        if self.keys.enabled and self.keys.role(headers.get(b"authorization", b"").decode("latin-1")) is None:
            return (
                401,
                "missing or wrong API key: send Authorization: Bearer KEY",
                "HTTPError",
                {**close, "WWW-Authenticate": "Bearer"},
            )
        if has_body or method in ("POST", "PUT", "PATCH"):
            media = headers.get(b"content-type", b"").decode("latin-1").split(";", 1)[0].strip().lower()
            if media not in route.types:
                return 415, f"Content-Type must be {' or '.join(sorted(route.types))}", "HTTPError", close
        length = headers.get(b"content-length")
        if length is not None:
            text = length.decode("latin-1").strip()
            if not text.isdigit():
                return 400, "Content-Length is not a number", "HTTPError", {"Connection": "close"}
            if int(text) > route.limit:
                return 413, f"request body over {route.limit} bytes", "LimitError", close
        return None

    def _origin_ok(self, origin: str, host: str, scope: dict) -> bool:
        origin = origin.strip().rstrip("/")
        if origin in self.cors:
            return True
        scheme = scope.get("scheme", "http")
        return bool(host) and origin.lower() == f"{scheme}://{host}".lower()


def _capped(receive: Any, limit: int) -> Any:
    """`receive` counting body bytes: over `limit` raises BodyTooLarge; a stalled body BodyTimeout."""
    state = {"seen": 0, "done": False}

    async def capped() -> dict:
        if state["done"]:
            return await receive()
        try:
            message = await asyncio.wait_for(receive(), BODY_IDLE_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise BodyTimeout() from None
        if message["type"] == "http.request":
            state["seen"] += len(message.get("body", b""))
            if state["seen"] > limit:
                raise BodyTooLarge(limit)
            state["done"] = not message.get("more_body", False)
        else:
            state["done"] = True
        return message

    return capped


async def _respond(status: int, body: dict, send: Any, headers: dict[str, str] | None = None) -> None:
    raw = json.dumps(body).encode()
    out = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    out += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": raw})


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head (see module docstring); uvicorn
    loads it by name (`souk.serving.guard:GuardedH11`), also in worker processes."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport):  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._waiting() and self._head_timer is None:
            self._arm()
        super().data_received(data)
        if not self._waiting():
            self._disarm()

    def connection_lost(self, exc):  # type: ignore[override]
        self._disarm()
        super().connection_lost(exc)

    def _waiting(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._waiting() and not self.transport.is_closing() and self.timeout_keep_alive_task is None:
            self.transport.close()  # (idle after a response, uvicorn's keep-alive timer closes it)
