"""uvicorn's httptools protocol, with a fast lane that answers inference requests itself.

For every request uvicorn builds an ASGI scope, a request-response cycle with an event, a task
running the app, and two ``send`` messages whose headers it validates. For a 20 us model that
machinery is most of the server's time, and at concurrency 1 it is most of the latency. The
lane takes an inference request (``POST`` to a V2 ``/infer`` or V1 ``:predict`` path) at the
parser: it collects the body, hands it to ``modelport.serve.infer.start_call`` with a callback,
and the callback writes the response to the socket. A fast model's run happens in the batcher's
turn right after the loop step that read the request: no task, no future, no ASGI message.

The lane only takes what it can answer exactly as the ASGI app would: HTTP/1.1, a
Content-Length within the body limit, an authorized request (when a token is set), no
``Expect: 100-continue``, no percent-escapes in the path, and nothing else in progress on the
connection. It writes uvicorn's access log line itself when the access log is on. Everything else (other routes, errors of the gate,
pipelined requests behind a busy one) goes through uvicorn and the ASGI app unchanged. From a
lane request's headers until its answer is written and drained, a stand-in for uvicorn's cycle
tells uvicorn that the connection is busy, so that uvicorn queues pipelined requests behind it,
marks disconnects and closes the connection after the answer at shutdown, as it does for its
own cycles; and while a client does not read its answers, its connection is not read either.

This builds on uvicorn's ``HttpToolsProtocol`` internals (its parser callbacks and ``cycle``,
``pipeline`` and ``on_response_complete``); ``pyproject.toml`` bounds the uvicorn version it
was written against, and every serving test runs through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelport.serve import infer

__all__ = ["protocol_class"]

_BIG = 1 << 16  # bodies above this go out in a vectored write instead of being joined


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
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _NoEvent:
    def set(self) -> None:
        pass


class _LaneCycle:
    """What uvicorn's protocol reads of its ``cycle`` while the lane answers a request."""

    __slots__ = ("disconnected", "keep_alive", "response_complete")
    message_event = _NoEvent()

    def __init__(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive
        self.disconnected = False
        self.response_complete = False


@dataclass(slots=True)
class _LaneRequest:
    target: infer.Target
    header_length: str | None
    content_encoding: str | None
    cycle: _LaneCycle
    url: bytes  # for the access log
    chunks: list[bytes] = field(default_factory=list)


def protocol_class(app: Any, access_log: bool = False) -> Any:
    """The protocol class for uvicorn's ``http`` setting: with the fast lane when ``app`` is a
    ``ModelportApp`` (logging its requests to uvicorn's access log, by their direct peer, when
    ``access_log``), coalesced writes in any case; "auto" if httptools is missing."""
    try:
        import httptools
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:
        return "auto"
    from modelport.serve.app import ModelportApp, read_headers

    # The lane needs these of uvicorn's protocol; without them it stays off, uvicorn serves all.
    lane_on = isinstance(app, ModelportApp) and all(
        hasattr(HttpToolsProtocol, name)
        for name in ("on_response_complete", "_unset_keepalive_if_required", "on_headers_complete")
    )
    gate: ModelportApp = app

    class Protocol(HttpToolsProtocol):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._raw = transport
            self._lane: _LaneRequest | None = None
            self._draining: _LaneCycle | None = None
            self.transport = _CoalescingTransport(transport, self.loop)  # type: ignore[assignment]

        # -- parser callbacks -----------------------------------------------------------------

        def on_headers_complete(self) -> None:
            self._lane = None
            if self._raw.is_closing() and self.cycle is not None:
                # Pipelined behind a request whose answer closed the connection: nobody will
                # read an answer (the finished cycle makes on_body and on_message_complete skip).
                return
            # A request answered within the data_received that brought the next one armed the
            # keep-alive timer; it must not run while this one is served.
            self._unset_keepalive_if_required()
            lane = self._take() if lane_on else None
            if lane is None:
                super().on_headers_complete()
            else:
                # Busy from now on, body still to come: a shutdown lets this request finish and
                # closes after its answer; pipelined requests queue behind it.
                self.cycle = lane.cycle  # type: ignore[assignment]
            self._lane = lane

        def on_body(self, body: bytes) -> None:
            lane = self._lane
            if lane is None:
                super().on_body(body)
            else:
                lane.chunks.append(body)

        def on_message_complete(self) -> None:
            lane = self._lane
            if lane is None:
                super().on_message_complete()
                return
            self._lane = None
            cycle = lane.cycle
            chunks = lane.chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)

            def answer(reply: infer.Reply) -> None:
                if access_log:  # before the answer, as uvicorn does
                    client = "{}:{}".format(*self.client) if self.client else "-"
                    self.access_logger.info('%s - "POST %s HTTP/1.1" %d', client,
                                            lane.url.decode("latin-1"), reply.status)
                self._answer(cycle, reply)

            gate.lane_answers += 1
            # One connection: no other request can join this turn, the model may run at once.
            alone = len(self.connections) == 1
            request = infer.Call(lane.target, body, lane.header_length, lane.content_encoding)
            task = infer.start_call(gate.service, request, answer, self._raw.is_closing, alone)
            if task is not None:  # the model had to be found or loaded first
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

        # -- the lane -------------------------------------------------------------------------

        def _take(self) -> _LaneRequest | None:
            """The lane's request when the lane can answer this one exactly as the app would."""
            parser = self.parser
            cycle = self.cycle
            if (
                self.expect_100_continue
                or self.flow.write_paused  # the client is not reading: uvicorn waits for it
                or self.limit_concurrency is not None
                or (cycle is not None and not cycle.response_complete)
                or self.pipeline
                or parser.get_method() != b"POST"
                or parser.get_http_version() != "1.1"
                or parser.should_upgrade()
            ):
                return None
            try:
                raw_path = httptools.parse_url(self.url).path
                path = self.root_path + raw_path.decode("ascii")
            except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
                return None
            if "%" in path:
                return None
            target = infer.match(path)
            if target is None:
                return None
            headers = read_headers(self.headers)
            if (
                headers.chunked
                or not 0 <= headers.length <= gate.max_body_bytes
                or not gate.authorized(path, headers.authorization)
            ):
                return None
            lane_cycle = _LaneCycle(parser.should_keep_alive())
            return _LaneRequest(
                target, headers.header_length, headers.encoding, lane_cycle, self.url
            )

        def _answer(self, cycle: _LaneCycle, reply: infer.Reply) -> None:
            raw = self._raw
            if raw.is_closing():
                cycle.response_complete = True
                return
            head = [STATUS_LINE[reply.status]]
            for name, value in (*self.server_state.default_headers, *reply.headers):
                head += (name, b": ", value, b"\r\n")
            body = reply.body
            head.append(b"content-length: %d\r\n" % len(body))
            if not cycle.keep_alive:
                head.append(b"connection: close\r\n")
            head.append(b"\r\n")
            self.transport.flush()  # type: ignore[attr-defined]  # a held head, if any
            if len(body) > _BIG:
                raw.writelines((b"".join(head), body))
            else:
                head.append(body)
                raw.write(b"".join(head))
            if self.flow.write_paused and cycle.keep_alive:
                # The client is not reading its answers: this request stays in progress (what
                # follows queues, reading pauses) until it does, as uvicorn's own ``send`` waits.
                self.flow.pause_reading()
                self._draining = cycle
                return
            self._complete(cycle)

        def _complete(self, cycle: _LaneCycle) -> None:
            cycle.response_complete = True
            if not cycle.keep_alive:
                self._raw.close()
            self.on_response_complete()  # next pipelined request, or the keep-alive timer

        def resume_writing(self) -> None:
            super().resume_writing()
            cycle, self._draining = self._draining, None
            if cycle is not None:
                self._complete(cycle)

    return Protocol
