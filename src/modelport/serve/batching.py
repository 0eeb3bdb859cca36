"""``DynamicBatcher``: coalesces concurrent requests for one loaded model version into one run.

Callers hand a checked feed and a callback to ``enqueue`` on the event loop (``run`` is the same
as a coroutine); the callback gets exactly the caller's rows. Each request runs in one of two
places:

* **The model's worker thread** (one per loaded version), for models whose runs are slow: the
  loop puts the feed on a queue; the worker takes what has queued up (up to ``max_batch_size``
  rows of requests with the same non-batch shapes), concatenates it into one session run, splits
  the outputs back by rows and calls each caller back on its loop. ONNX Runtime releases the
  GIL, so the loop keeps parsing requests meanwhile. With ``max_queue_delay_ms = 0`` (the
  default) the worker never waits for company: a batch is what arrived while the previous run
  was busy, so batching costs nothing at low load and grows with the load; a positive delay lets
  the first request of a batch wait that long for more rows.
* **The event loop itself**, for models whose recent runs took at most ``inline_max_ms`` (1 ms by
  default): the requests that reach the model in the same turn of the loop (every connection
  with a request ready is read in one turn) are batched the same way and run in one callback
  right after that turn. Handing a 50 us run to a thread and back costs more than the run (two
  wake-ups and a GIL hand-over each way), and the loop is never held for longer than such a
  short run. The run times are a moving average, so a model whose batches grow slow moves to its
  worker by itself, and back.

A batched run that fails (one bad request poisons the batch) is retried one request at a time, so
only the guilty request gets the error. An output without a batch axis turns batching off for the
model. The worker's queue is bounded: beyond ``max_queue_size`` waiting requests, UnavailableError
(HTTP 503) instead of unbounded memory. ``close`` stops new requests; what is queued still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from modelport.errors import ModelportError, UnavailableError
from modelport.runtime import Session
from modelport.serve.config import ModelConfig
from modelport.serve.metrics import ModelMetrics

__all__ = ["DynamicBatcher", "can_batch"]

log = logging.getLogger("modelport.serve")
Outputs = dict[str, np.ndarray]
_Result = tuple["_Item", Outputs | None, BaseException | None]
Done = Callable[[Outputs | None, BaseException | None], None]  # (rows, None) or (None, error)


def can_batch(session: Session) -> bool:
    """True when every input has a dynamic first axis (the batch) and no output has a fixed one.

    Named first axes must share one name: ``[N, 3]`` and ``[M, 4]`` are not one batch axis.
    """
    sig = session.signature
    if not sig.inputs:
        return False
    firsts = []
    for spec in sig.inputs:
        if not spec.has_dynamic_batch:
            return False
        firsts.append(spec.shape[0])
    if len({d for d in firsts if d is not None}) > 1:
        return False
    # An output of unknown shape (ORT reports ()) is allowed and checked on every batched run.
    return all(not spec.shape or spec.has_dynamic_batch for spec in sig.outputs)


def _runner(session: Session) -> Callable[[Mapping[str, np.ndarray], Sequence[str] | None],
                                          Outputs]:
    """``session.run``, minus ONNX Runtime's per-call Python checks where they cannot matter.

    Feeds reaching the batcher were already checked against the signature, so on the CPU
    provider (no provider fallback to lose) the compiled session is called directly. On any
    error the public path runs again, so the error is the one ``Session.run`` maps and words.
    """
    compiled = getattr(session.ort_session, "_sess", None)
    if compiled is None or session.providers != ["CPUExecutionProvider"]:
        return session.run
    every = list(session.signature.output_names)

    def run(feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> Outputs:
        names = list(outputs) if outputs else every
        try:
            values = compiled.run(names, feed, None)
        except Exception:
            return session.run(feed, outputs)  # raises the mapped InferenceError
        return dict(zip(names, values, strict=True))

    return run


def _never() -> bool:
    return False


@dataclass(eq=False)
class _Item:
    feed: Mapping[str, np.ndarray]
    outputs: tuple[str, ...] | None
    done: Done  # called on ``loop``
    abandoned: Callable[[], bool]  # True: nobody waits for the answer any more, skip the run
    loop: asyncio.AbstractEventLoop
    rows: int  # -1: cannot share a run (batching off, or inputs disagree on the batch size)
    key: tuple[object, ...]  # non-batch shapes; only equal keys share a run
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    """Runs one session for concurrent callers; see the module docstring."""

    def __init__(
        self,
        session: Session,
        config: ModelConfig,
        metrics: ModelMetrics,
        label: str,
    ) -> None:
        self.session = session
        self.config = config
        self.metrics = metrics
        self.label = label
        self.batching = config.batching and config.max_batch_size > 1 and can_batch(session)
        self._inputs = tuple(session.signature.input_names)
        self._run_session = _runner(session)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(
            target=self._work, name=f"modelport-worker-{label}", daemon=True
        )
        # Cheap counters for tests and stats: session runs, the largest run, runs on the loop.
        self.runs = 0
        self.max_rows_seen = 0
        self.loop_runs = 0
        self._inline_s = config.inline_max_ms / 1000.0
        self._recent_s = math.inf  # moving average of run durations (unknown: use the worker)
        self._turn: list[_Item] | None = None  # requests to run after this turn of the loop

    def start(self) -> None:
        self._thread.start()

    # -- the event loop's side ----------------------------------------------------------------

    def enqueue(
        self,
        feed: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None,
        done: Done,
        abandoned: Callable[[], bool] = _never,
        alone: bool = False,
    ) -> None:
        """Run one checked feed; ``done(rows, None)`` or ``done(None, error)`` is called on the
        caller's loop with exactly its rows of every (requested) output, unless ``abandoned()``
        says by then that nobody waits for them. Call it on the running event loop.
        UnavailableError when closed or the worker's queue is full.

        ``alone``: the caller knows that no other request can reach this model in this turn
        (the server has one connection); a fast model then runs at once, inside this call,
        without waiting for the turn to end (nothing could join it)."""
        loop = asyncio.get_running_loop()
        if self._recent_s <= self._inline_s and not self._closed:
            item = self._item(feed, outputs, loop, done, abandoned)
            if alone and self._turn is None:
                self._run_here([item])
                return
            if self._turn is None:
                self._turn = [item]
                loop.call_soon(self._run_turn)
            else:
                self._turn.append(item)
            return
        self._check_worker_queue()
        self._queue.put(self._item(feed, outputs, loop, done, abandoned))

    async def run(
        self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> Outputs:
        """``enqueue`` as a coroutine."""
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        self.enqueue(feed, outputs, _resolver(future), future.cancelled)
        return await future

    def submit(
        self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> asyncio.Future[Outputs]:
        """Queue a checked feed for the worker, however fast the model; the future resolves to
        this request's rows."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()
        self._check_worker_queue()
        self._queue.put(self._item(feed, outputs, loop, _resolver(future), future.cancelled))
        return future

    def _check_worker_queue(self) -> None:
        if self._closed:
            raise UnavailableError(f"model {self.label} is unloading; retry on another replica")
        if self._queue.qsize() >= self.config.max_queue_size:
            raise UnavailableError(
                f"model {self.label} has {self.config.max_queue_size} requests waiting (its "
                "queue is full); retry later or raise max_queue_size"
            )

    def _item(
        self,
        feed: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None,
        loop: asyncio.AbstractEventLoop,
        done: Done,
        abandoned: Callable[[], bool],
    ) -> _Item:
        rows, key = self._shape_key(feed)
        self.metrics.pending.inc()
        return _Item(feed, tuple(outputs) if outputs else None, done, abandoned, loop, rows, key)

    def _shape_key(self, feed: Mapping[str, np.ndarray]) -> tuple[int, tuple[object, ...]]:
        if not self.batching:
            return -1, ()
        arrays = [feed[name] for name in self._inputs]
        rows = arrays[0].shape[0]
        if rows == 0 or any(a.shape[0] != rows for a in arrays):
            return -1, ()
        return rows, tuple(a.shape[1:] for a in arrays)

    def _run_turn(self) -> None:
        """On the loop, after the turn in which these requests arrived: run them, batched."""
        items, self._turn = self._turn or [], None
        self._run_here(items)

    def _run_here(self, items: list[_Item]) -> None:
        for group in self._groups(items):
            self.loop_runs += 1
            try:
                results = self._execute(group)
            except Exception as exc:  # a bug must not leave callers waiting forever
                log.exception("run of %s failed", self.label)
                results = [(item, None, exc) for item in group]
            _settle(results, self)

    def _groups(self, items: list[_Item]) -> Iterator[list[_Item]]:
        """Consecutive compatible requests, up to max_batch_size rows per group."""
        group: list[_Item] = []
        rows = 0
        limit = self.config.max_batch_size
        for item in items:
            if group and (item.rows <= 0 or item.key != group[0].key or rows + item.rows > limit
                          or group[0].rows <= 0):
                yield group
                group, rows = [], 0
            group.append(item)
            rows += max(item.rows, 0)
        if group:
            yield group

    def run_now(self, feed: Mapping[str, np.ndarray]) -> Outputs:
        """A synchronous run outside any queue (warm-up); it gives the first run time."""
        start = time.perf_counter()
        result = self.session.run(feed)
        self._recent_s = time.perf_counter() - start
        return result

    def close(self) -> None:
        """Stop taking requests; the worker finishes everything already queued, then exits."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the worker thread --------------------------------------------------------------------

    def _work(self) -> None:
        carry: _Item | None = None
        stopping = False
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is None:
                return
            batch = [first]
            if first.rows > 0:
                carry, stopping = self._gather(first, batch)
            try:
                results = self._execute(batch)
            except Exception as exc:  # a bug must not kill the worker and hang every caller
                log.exception("worker of %s failed", self.label)
                results = [(item, None, exc) for item in batch]
            self._deliver(results)
            if stopping and carry is None:
                return

    def _gather(self, first: _Item, batch: list[_Item]) -> tuple[_Item | None, bool]:
        """Add queued compatible requests to ``batch``; return a leftover item and a stop flag."""
        limit = self.config.max_batch_size
        rows = first.rows
        deadline = first.enqueued + self.config.max_queue_delay_ms / 1000.0
        while rows < limit:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    return None, False
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    return None, False
            if item is None:
                return None, True
            if item.rows <= 0 or item.key != first.key or rows + item.rows > limit:
                return item, False
            batch.append(item)
            rows += item.rows
        return None, False

    def _deliver(self, results: list[_Result]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
        for entry in results:
            by_loop.setdefault(entry[0].loop, []).append(entry)
        for loop, entries in by_loop.items():
            # A closed loop (RuntimeError) means nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, entries, self)

    # -- either side --------------------------------------------------------------------------

    def _execute(self, batch: list[_Item]) -> list[_Result]:
        """Run a group of compatible requests as one session run; split the rows back."""
        cancelled = [(item, None, None) for item in batch if item.abandoned()]
        batch = [item for item in batch if not item.abandoned()]
        if not batch:
            return cancelled  # type: ignore[return-value]
        start = time.perf_counter()
        queue_hist = self.metrics.queue
        for item in batch:
            queue_hist.observe(start - item.enqueued)
        if len(batch) == 1:
            item = batch[0]
            return [*cancelled, (item, *self._run_one(item.feed, item.outputs))]
        feed = {
            name: np.concatenate([item.feed[name] for item in batch]) for name in self._inputs
        }
        total = sum(item.rows for item in batch)
        result, error = self._run_one(feed, _union(item.outputs for item in batch), rows=total)
        if error is None and result is not None and all(
            a.ndim and a.shape[0] == total for a in result.values()
        ):
            results: list[_Result] = list(cancelled)  # type: ignore[arg-type]
            offset = 0
            for item in batch:
                stop = offset + item.rows
                names = item.outputs or tuple(result)
                results.append((item, {n: result[n][offset:stop] for n in names}, None))
                offset = stop
            return results
        if error is None:
            log.warning("model %s has an output without a batch axis; batching turned off",
                        self.label)
            self.batching = False
        # One by one, so that only the request that broke the batch gets the error.
        return [*cancelled, *((item, *self._run_one(item.feed, item.outputs)) for item in batch)]

    def _run_one(
        self,
        feed: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None,
        rows: int | None = None,
    ) -> tuple[Outputs | None, BaseException | None]:
        start = time.perf_counter()
        try:
            result = self._run_session(feed, outputs)
        except ModelportError as exc:
            return None, exc
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.compute.observe(elapsed)
            recent = self._recent_s
            self._recent_s = elapsed if recent == math.inf else 0.8 * recent + 0.2 * elapsed
        if rows is None:
            first = next(iter(feed.values()))
            rows = first.shape[0] if first.ndim else 1
        self.metrics.batch.observe(rows)
        self.runs += 1
        if rows > self.max_rows_seen:
            self.max_rows_seen = rows
        return result, None


def _settle(entries: Iterable[_Result], batcher: DynamicBatcher) -> None:
    """On the caller's loop: hand each caller its rows or its error."""
    metrics = batcher.metrics
    for item, value, error in entries:
        metrics.pending.dec()
        if value is None and error is None:
            continue  # abandoned: not run
        try:
            item.done(value, error)
        except Exception:  # one caller's failing callback must not strand the others
            log.exception("answering a request of %s failed", batcher.label)


def _resolver(
    future: asyncio.Future[Outputs],
) -> Done:
    def resolve(value: Outputs | None, error: BaseException | None) -> None:
        if future.done():
            return  # the caller gave up
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)  # type: ignore[arg-type]

    return resolve


def _union(requested: Iterable[tuple[str, ...] | None]) -> tuple[str, ...] | None:
    names: list[str] = []
    for outputs in requested:
        if outputs is None:
            return None
        names.extend(n for n in outputs if n not in names)
    return tuple(names)
