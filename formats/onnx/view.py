"""``python -m formats view``: open a model in Netron, served on a loopback address.

``start_view`` starts Netron's small HTTP server in a background thread and returns a handle with
the URL and a ``stop`` method (tests and notebooks use it); ``view`` does the same and blocks
until Ctrl-C, which is what the command runs. The server binds 127.0.0.1 only: a model file is
not something to publish on every interface by accident.

The model is a model file (ONNX or any format Netron reads) or a bundle directory, whose
``model.onnx`` is shown.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from formats._lazy import require
from formats.errors import NotFoundError, UsageError

__all__ = ["ViewServer", "resolve_view_file", "start_view", "view"]

LOOPBACK = "127.0.0.1"
# What makes a directory a bundle, and the file of it that Netron shows.
BUNDLE_MANIFEST = "manifest.json"
BUNDLE_MODEL = "model.onnx"


@dataclass
class ViewServer:
    """A running Netron server; ``stop()`` (or leaving the ``with`` block) shuts it down."""

    url: str
    address: tuple[str, int]
    model_file: Path
    label: str

    @property
    def model_url(self) -> str:
        """Where Netron serves the model file's bytes (its page fetches this)."""
        return f"{self.url}/data/{self.model_file.name}"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and wait (up to ``timeout`` s) until the server thread has ended."""
        netron = require("netron", "view")
        netron.stop(self.address)
        deadline = time.monotonic() + timeout
        while netron.status(self.address) and time.monotonic() < deadline:
            time.sleep(0.02)

    @property
    def running(self) -> bool:
        netron = require("netron", "view")
        return bool(netron.status(self.address))

    def __enter__(self) -> ViewServer:
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()


def resolve_view_file(model: str | Path) -> tuple[Path, str]:
    """The file to show for ``model`` and its label: a model file as it is, a bundle's model.onnx.

    A bundle is a directory holding manifest.json and model.onnx.
    """
    text = str(model)
    if not text.strip():
        raise UsageError("no model given; name a model file or a bundle directory")
    path = Path(text).expanduser()
    if path.is_file():
        return path, path.name
    if path.is_dir():
        if not (path / BUNDLE_MANIFEST).is_file():
            raise UsageError(
                f"{text!r} is a directory but not a bundle (no {BUNDLE_MANIFEST}); "
                "give a model file or a bundle directory"
            )
        onnx_file = path / BUNDLE_MODEL
        if not onnx_file.is_file():
            raise NotFoundError(f"bundle {text!r} has no {BUNDLE_MODEL} to show")
        return onnx_file, f"{path.name}/{BUNDLE_MODEL}"
    raise NotFoundError(f"model file {text!r} does not exist")


def start_view(
    model: str | Path,
    *,
    port: int | None = None,
    browse: bool = False,
) -> ViewServer:
    """Serve ``model`` (a model file Netron reads, or a bundle directory) on loopback."""
    model_file, label = resolve_view_file(model)
    netron = require("netron", "view")
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, got {port}")
    port = port if port is not None else _free_port()
    _check_port_free(port)
    # Netron logs "Serving ... at ..." and calls logging.basicConfig() when the root logger has
    # no handler; keep our own output the only thing the user sees, and the root logger as it was.
    logging.getLogger("netron").setLevel(logging.WARNING)
    placeholder = logging.NullHandler()
    root = logging.getLogger()
    root.addHandler(placeholder)
    try:
        address = netron.start(str(model_file), address=(LOOPBACK, port), browse=browse)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} is in use; choose another with --port") from exc
        raise UsageError(f"cannot start Netron on {LOOPBACK}:{port}: {exc.strerror}") from exc
    finally:
        root.removeHandler(placeholder)
    host, bound = address
    return ViewServer(f"http://{host}:{bound}", (host, bound), model_file, label)


def view(
    model: str | Path,
    *,
    port: int | None = None,
    browse: bool = True,
    on_ready: Any = None,
) -> None:
    """Start Netron, report the URL through ``on_ready(server)``, and block until Ctrl-C."""
    server = start_view(model, port=port, browse=browse)
    try:
        if on_ready is not None:
            on_ready(server)
        while server.running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _check_port_free(port: int) -> None:
    """Fail with a clear message before Netron's thread would die on a busy port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with contextlib.suppress(AttributeError, OSError):
            # Match what the server will do, so a port in TIME_WAIT does not read as busy.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} is in use; choose another with --port") from exc
            raise UsageError(f"cannot use port {port}: {exc.strerror}") from exc
