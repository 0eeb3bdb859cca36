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


def make_server(
    app: Any,
    *,
    log_level: str = "info",
    access_log: bool = False,
    graceful_timeout_s: float | None = 30.0,
) -> Any:
    """A ``uvicorn.Server`` for ``app``: httptools (with the inference fast lane of
    ``modelport.serve.protocol``) and uvloop when installed, no access log by default (it costs
    more than a small model's inference)."""
    uvicorn = require("uvicorn", "serve")
    from modelport.serve.protocol import protocol_class  # imports the serve extra's packages

    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        http=protocol_class(app, access_log),
        # X-Forwarded-For only matters to the access log; rewriting every scope costs time.
        proxy_headers=access_log,
        timeout_graceful_shutdown=graceful_timeout_s,
        server_header=False,
        date_header=False,
    )
    return uvicorn.Server(config)


def run_server(app: Any, sock: socket.socket, **options: Any) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn then finishes in-flight requests (up to the graceful
    timeout) and the app's lifespan drains every model's queue."""
    logging.getLogger("modelport.serve").setLevel(
        str(options.get("log_level", "info")).upper()
    )
    server = make_server(app, **options)
    server.run(sockets=[sock])
