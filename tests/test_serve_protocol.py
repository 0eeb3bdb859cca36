"""The server's fast lane for inference requests, on raw sockets: pipelining, keep-alive and
``Connection: close``, the requests it must leave to the ASGI app (HTTP/1.0, chunked bodies,
``Expect: 100-continue``, escaped paths, failed auth) and clients that leave early."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest

from modelport.repository import Repository
from modelport.serve import ModelConfig
from tests.test_serve_support import (
    Server,
    mlp_model,
    mlp_reference,
    register,
    serving,
    slow_model,
)

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    repo = Repository(tmp_path_factory.mktemp("serve-protocol") / "repo")
    register(repo, mlp_model(0), "mlp")
    register(repo, slow_model(384), "slow")
    return repo


@pytest.fixture(scope="module")
def server(repo: Repository) -> Iterator[Server]:
    with serving(repo, defaults=ModelConfig(inline_max_ms=100)) as srv:
        yield srv


def _infer_body(x: np.ndarray, name: str = "x") -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.ravel().tolist()}]}).encode()


def _post(path: str, body: bytes, *extra: str, version: str = "1.1") -> bytes:
    lines = [f"POST {path} HTTP/{version}", "Host: t", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


class _Reader:
    """Reads HTTP/1.1 responses (Content-Length bodies) off a socket, in order."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def closed(self) -> bool:
        self.sock.settimeout(5)
        try:
            return not self.buf and self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def _connect(srv: Server) -> tuple[socket.socket, _Reader]:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    return sock, _Reader(sock)


def _scores(body: bytes) -> np.ndarray:
    doc = json.loads(body)
    out = next(o for o in doc["outputs"] if o["name"] == "scores")
    return np.array(out["data"], np.float32).reshape(out["shape"])


def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    xs = [np.full((1, 4), i, np.float32) for i in range(3)]
    before = server.app.lane_answers
    sock, reader = _connect(server)
    with sock:
        sock.sendall(_post("/v2/models/mlp/infer", _infer_body(xs[0])) + _get("/v2/health/ready")
                     + _post("/v2/models/mlp/infer", _infer_body(xs[1]))
                     + _post("/v1/models/mlp:predict", json.dumps({"inputs": xs[2].tolist()})
                             .encode()))
        status, _, body = reader.response()
        assert status == 200
        np.testing.assert_allclose(_scores(body), mlp_reference(xs[0]), rtol=1e-5)
        assert reader.response()[0] == 200  # ready, between the two inference answers
        status, _, body = reader.response()
        np.testing.assert_allclose(_scores(body), mlp_reference(xs[1]), rtol=1e-5)
        status, headers, body = reader.response()
        assert status == 200 and headers["content-type"] == "application/json"
        predictions = json.loads(body)["predictions"]
        np.testing.assert_allclose(predictions["scores"], mlp_reference(xs[2]), rtol=1e-5)
    assert server.app.lane_answers > before


def test_pipelined_requests_behind_a_slow_model_wait_their_turn(server: Server) -> None:
    sock, reader = _connect(server)
    with sock:
        sock.sendall(_post("/v2/models/slow/infer", _infer_body(np.ones((1, 1), np.float32)))
                     + _post("/v2/models/mlp/infer", _infer_body(np.zeros((1, 4), np.float32)))
                     + _post("/v2/models/slow/infer", _infer_body(np.full((1, 1), 3, np.float32)))
                     + _get("/v2/health/live"))
        first = reader.response()
        assert json.loads(first[2])["outputs"][0]["data"] == [2.0]
        assert json.loads(reader.response()[2])["model_name"] == "mlp"
        assert json.loads(reader.response()[2])["outputs"][0]["data"] == [6.0]
        assert reader.response()[0] == 200


def test_keep_alive_and_connection_close(server: Server) -> None:
    body = _infer_body(np.ones((2, 4), np.float32))
    sock, reader = _connect(server)
    with sock:
        for _ in range(3):  # one connection, many requests
            sock.sendall(_post("/v2/models/mlp/infer", body))
            status, headers, _ = reader.response()
            assert status == 200 and "connection" not in headers
        sock.sendall(_post("/v2/models/mlp/infer", body, "Connection: close"))
        status, headers, answer = reader.response()
        assert status == 200 and headers["connection"] == "close"
        assert _scores(answer).shape == (2, 3)
        assert reader.closed()
    sock, reader = _connect(server)
    with sock:  # what is pipelined behind "Connection: close" is not answered
        sock.sendall(_post("/v2/models/mlp/infer", body, "Connection: close")
                     + _post("/v2/models/mlp/infer", body) + _get("/v2/health/live"))
        assert reader.response()[0] == 200
        assert reader.closed()
    assert server.app.state.service.ready()


@pytest.mark.parametrize("kind", ["http/1.0", "chunked", "expect-100", "escaped path", "split"])
def test_requests_outside_the_lane_get_the_same_answers(server: Server, kind: str) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    body = _infer_body(x)
    before = server.app.lane_answers
    sock, reader = _connect(server)
    with sock:
        if kind == "http/1.0":
            sock.sendall(_post("/v2/models/mlp/infer", body, version="1.0"))
        elif kind == "chunked":
            head = (b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: t\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n")
            half = len(body) // 2
            sock.sendall(head + b"%x\r\n" % half + body[:half] + b"\r\n"
                         + b"%x\r\n" % (len(body) - half) + body[half:] + b"\r\n0\r\n\r\n")
        elif kind == "expect-100":
            request = _post("/v2/models/mlp/infer", body, "Expect: 100-continue")
            head, _ = request.split(b"\r\n\r\n", 1)
            sock.sendall(head + b"\r\n\r\n")
            assert reader.response()[0] == 100
            sock.sendall(body)
        elif kind == "escaped path":
            sock.sendall(_post("/v2/models/ml%70/infer", body))
        else:  # headers and body in separate segments, with pauses: still the lane
            request = _post("/v2/models/mlp/infer", body)
            pieces = [request[:30], request[30:len(request) - len(body)],
                      request[len(request) - len(body):-5], request[-5:]]
            for piece in pieces:
                sock.sendall(piece)
                time.sleep(0.02)
        status, _, answer = reader.response()
        assert status == 200, answer
        np.testing.assert_allclose(_scores(answer), mlp_reference(x), rtol=1e-5)
    taken = server.app.lane_answers - before
    assert taken == (1 if kind == "split" else 0)


def test_a_client_that_leaves_early_does_not_disturb_the_server(server: Server) -> None:
    for _ in range(3):
        sock, _ = _connect(server)
        sock.sendall(_post("/v2/models/slow/infer", _infer_body(np.ones((1, 1), np.float32))))
        sock.close()  # before the answer
        partial = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        partial.sendall(_post("/v2/models/mlp/infer", _infer_body(np.ones((1, 4), np.float32)))
                        [:-10])
        partial.close()  # mid-body
    sock, reader = _connect(server)
    with sock:
        sock.sendall(_post("/v2/models/slow/infer", _infer_body(np.full((1, 1), 5, np.float32))))
        assert json.loads(reader.response()[2])["outputs"][0]["data"] == [10.0]


def test_auth_on_the_lane(repo: Repository) -> None:
    body = _infer_body(np.ones((1, 4), np.float32))
    with serving(repo, ["mlp"], auth_token=TOKEN) as srv:
        sock, reader = _connect(srv)
        with sock:
            for header, want in [("", 401), ("Authorization: Bearer nope", 401),
                                 (f"Authorization: bearer {TOKEN}", 200),
                                 (f"Authorization: Bearer {TOKEN}", 200)]:
                sock.sendall(_post("/v2/models/mlp/infer", body, *([header] if header else [])))
                status, headers, answer = reader.response()
                assert status == want, answer
                if want == 401:
                    assert headers["www-authenticate"] == "Bearer"
                    assert "bearer token" in json.loads(answer)["error"]
        assert srv.app.lane_answers == 2  # the refusals were the app's


def test_requests_arriving_together_share_one_run(server: Server) -> None:
    service = server.app.state.service
    conns = [_connect(server) for _ in range(9)]
    try:
        xs = [np.full((1, 4), i, np.float32) for i in range(8)]
        for sock, reader in conns:  # warm: both models loaded and hot
            sock.sendall(_post("/v2/models/mlp/infer", _infer_body(xs[0])))
            reader.response()
        mlp = next(m for m in service.loaded() if m.name == "mlp").batcher
        runs = mlp.runs
        # The slow model runs on the loop (inline_max_ms=100) for a few ms: the eight requests
        # sent meanwhile are read in one turn and must share a run, each getting its own row.
        conns[0][0].sendall(_post("/v2/models/slow/infer", _infer_body(np.ones((1, 1), np.float32))))
        time.sleep(0.001)
        for (sock, _), x in zip(conns[1:], xs, strict=True):
            sock.sendall(_post("/v2/models/mlp/infer", _infer_body(x)))
        assert json.loads(conns[0][1].response()[2])["outputs"][0]["data"] == [2.0]
        for (_, reader), x in zip(conns[1:], xs, strict=True):
            status, _, body = reader.response()
            assert status == 200
            np.testing.assert_allclose(_scores(body), mlp_reference(x), rtol=1e-5)
        assert mlp.runs - runs < 8, "no two of the eight requests shared a run"
    finally:
        for sock, _ in conns:
            sock.close()


def test_the_lane_writes_the_access_log_when_it_is_on(repo: Repository) -> None:
    import logging
    import threading

    from modelport.serve import InferenceService, ServeConfig, bind_socket, create_app, make_server

    app = create_app(InferenceService(repo, ["mlp"], ServeConfig()))
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = make_server(app, log_level="warning", access_log=True)
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not (server.started and app.service.ready()) and time.monotonic() < deadline:
            time.sleep(0.01)
        access = logging.getLogger("uvicorn.access")
        access.setLevel(logging.INFO)
        handler = Collect()
        access.addHandler(handler)
        conn = socket.create_connection(("127.0.0.1", port), timeout=30)
        with conn:
            reader = _Reader(conn)
            conn.sendall(_post("/v2/models/mlp/infer?x=1", _infer_body(np.ones((1, 4), np.float32))))
            assert reader.response()[0] == 200
            conn.sendall(_post("/v2/models/nope/infer", _infer_body(np.ones((1, 4), np.float32))))
            assert reader.response()[0] == 404
        access.removeHandler(handler)
        assert app.lane_answers == 2
        assert any('"POST /v2/models/mlp/infer?x=1 HTTP/1.1" 200' in line for line in lines), lines
        assert any('"POST /v2/models/nope/infer HTTP/1.1" 404' in line for line in lines), lines
    finally:
        server.should_exit = True
        thread.join(30)


def test_a_request_whose_body_is_arriving_at_shutdown_is_answered(repo: Repository) -> None:
    x = np.ones((1, 4), np.float32)
    request = _post("/v2/models/mlp/infer", _infer_body(x))
    with serving(repo, ["mlp"]) as srv:
        sock, reader = _connect(srv)
        with sock:
            sock.sendall(request[:-20])
            time.sleep(0.05)
            srv.server.should_exit = True  # SIGTERM's flag: shut down gracefully
            time.sleep(0.3)
            sock.sendall(request[-20:])
            status, headers, body = reader.response()
            assert status == 200 and headers["connection"] == "close"
            np.testing.assert_allclose(_scores(body), mlp_reference(x), rtol=1e-5)
            assert reader.closed()


def test_a_client_that_does_not_read_its_answers_stops_being_read(server: Server) -> None:
    """Backpressure: the lane must not buffer answers without bound for a client that only
    sends. Once the client's window and the server's write buffer are full, the server stops
    reading, so the client's sends block."""
    request = _post("/v2/models/mlp/infer", _infer_body(np.ones((256, 4), np.float32)))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.settimeout(2.0)
    sent = 0
    limit = 60_000_000
    try:
        while sent < limit:
            sock.sendall(request * 16)
            sent += len(request) * 16
    except TimeoutError:
        pass
    finally:
        sock.close()
    assert sent < limit, f"the server read {sent} bytes from a client that reads nothing"
    # and it still serves others
    other, reader = _connect(server)
    with other:
        other.sendall(_post("/v2/models/mlp/infer", _infer_body(np.ones((1, 4), np.float32))))
        assert reader.response()[0] == 200


@pytest.mark.parametrize("version", ["1.1", "1.0"])  # the lane and the app
def test_bad_compressed_bodies_are_4xx(server: Server, version: str) -> None:
    import gzip
    import zlib

    good = _infer_body(np.ones((1, 4), np.float32))
    bomb = gzip.compress(b" " * (server.app.max_body_bytes + 10) + good)
    cases = [
        (gzip.compress(good), "gzip", 200, None),
        (zlib.compress(good), "Deflate", 200, None),
        (good, "identity", 200, None),
        (good, "br", 415, "Content-Encoding 'br' is not supported"),
        (b"\x1f\x8b not gzip at all", "gzip", 400, "not valid gzip data"),
        (gzip.compress(good)[:-12], "gzip", 400, "ends before its gzip data does"),
        (bomb, "gzip", 413, "inflates to more than the limit"),
    ]
    for body, coding, status, message in cases:
        sock, reader = _connect(server)
        with sock:
            sock.sendall(_post("/v2/models/mlp/infer", body, f"Content-Encoding: {coding}",
                               version=version))
            got, _, answer = reader.response()
        assert got == status, (coding, answer)
        if message:
            assert message in json.loads(answer)["error"]
        else:
            np.testing.assert_allclose(_scores(answer), mlp_reference(np.ones((1, 4))),
                                       rtol=1e-5)
