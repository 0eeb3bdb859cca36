"""Running the app under uvicorn on a socket we bind ourselves.

Binding first turns "port in use" into a one-line usage error (exit 2) instead of uvicorn's log
and exit 1, and lets tests and the benchmark use port 0 and read the port back.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import socket
from typing import Any

from modelport._lazy import require
from modelport.errors import MissingExtraError, UsageError

__all__ = ["bind_socket", "make_server", "require_serve_extra", "run_server"]


def require_serve_extra() -> None:
    """MissingExtraError unless every package of the ``serve`` extra is installed. Those that
    serving imports at once are imported; prometheus_client, needed only when ``/metrics`` is
    first scraped, is only looked up (importing it costs start-up time)."""
    for package in ("starlette", "uvicorn", "orjson"):
        require(package, "serve")
    if importlib.util.find_spec("prometheus_client") is None:
        raise MissingExtraError("prometheus_client", "serve")


def bind_socket(host: str, port: int) -> socket.socket:
    if not host.strip():
        raise UsageError("the host is empty; give an address such as 127.0.0.1 or 0.0.0.0")
    if not 0 <= port <= 65535:
        raise UsageError(f"port {port} is out of range; use 0 (any free port) to 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEADDR only lets us rebind over TIME_WAIT leftovers; a live listener still refuses.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} is in use; choose another with --port") from None
        if exc.errno in (errno.EADDRNOTAVAIL, socket.EAI_NONAME):
            raise UsageError(f"cannot listen on {host}: no such local address; check --host") \
                from None
        if exc.errno == errno.EACCES:
            raise UsageError(f"no permission to listen on port {port}; use a port above 1023") \
                from None
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    except socket.gaierror as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host!r}: {exc.strerror}; check --host") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _CoalescingTransport:
    """uvicorn writes a response's head and body with two ``write`` calls: two segments, two
    wake-ups of the client. This holds the head until the body comes (same loop step for our
    responses) and sends both in one vectored write; a head with no body yet (HEAD, 100-continue,
    a streamed body) still goes out at the end of the loop step."""

    __slots__ = ("_head", "_loop", "_transport")

    def __init__(self, transport: Any, loop: Any) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.writelines((head, data))
        elif data[:9] == b"HTTP/1.1 " and data[9:12] != b"100":
            self._head = data
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _http_protocol() -> Any:
    """uvicorn's httptools protocol with coalesced writes; "auto" if httptools is missing."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    class Protocol(HttpToolsProtocol):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.transport = _CoalescingTransport(transport, self.loop)  # type: ignore[assignment]

    return Protocol


def make_server(
    app: Any,
    *,
    log_level: str = "info",
    access_log: bool = False,
    graceful_timeout_s: float | None = 30.0,
) -> Any:
    """A ``uvicorn.Server`` for ``app``: httptools and uvloop when installed, no access log by
    default (it costs more than a small model's inference)."""
    uvicorn = require("uvicorn", "serve")
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        http=_http_protocol(),
        # X-Forwarded-For only matters to the access log; rewriting every scope costs time.
        proxy_headers=access_log,
        timeout_graceful_shutdown=graceful_timeout_s,
        server_header=False,
        date_header=False,
    )
    server = uvicorn.Server(config)
    watch = getattr(app, "watch_requests", None)
    if watch is not None:  # uvicorn keeps one task per request in flight in this set
        watch(server.server_state.tasks)
    return server


def run_server(app: Any, sock: socket.socket, **options: Any) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn then finishes in-flight requests (up to the graceful
    timeout) and the app's lifespan drains every model's queue."""
    logging.getLogger("modelport.serve").setLevel(
        str(options.get("log_level", "info")).upper()
    )
    server = make_server(app, **options)
    server.run(sockets=[sock])
