"""``InferenceService``: the data plane behind every route. It knows nothing about HTTP.

It holds the loaded versions (one ONNX Runtime session and one ``DynamicBatcher`` each), answers
metadata and readiness, resolves references at request time and runs inference.

Which models are served: the named references, or every model of the repository when none are
named. Each served model has a *default reference* (``iris``: its latest version, or whatever was
named, e.g. ``iris@production``). A request for ``iris`` follows that reference *at request time*:
moving the alias or registering a new latest version switches traffic without a restart (the new
version is loaded and warmed up by the first request that needs it, once). Requests may also name
``iris:3``, ``iris@staging`` or a ``/versions/{v}`` segment holding a number or an alias.

Resolution is cached: the cache is dropped as soon as the repository's SQLite index reports a
commit by anyone (``PRAGMA data_version``, looked at no more than every ``_CHECK_EVERY_S`` so
that the hot path makes no system call), and entries expire after ``resolve_ttl_s`` in any case.
An alias moved by ``modelport models alias`` in another process is thus followed within about
20 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modelport.errors import (
    ModelLoadError,
    ModelportError,
    NotFoundError,
    UnavailableError,
    UsageError,
)
from modelport.runtime import Session
from modelport.serve.batching import DynamicBatcher
from modelport.serve.config import ModelConfig, ServeConfig
from modelport.serve.metrics import Metrics, ModelMetrics
from modelport.signature import Signature, numpy_dtype

__all__ = ["InferenceService", "LoadedModel", "ModelSource", "synthesize_feed"]

log = logging.getLogger("modelport.serve")
PLATFORM = "onnx_onnxv1"  # Triton's platform string for ONNX models
_CHECK_EVERY_S = 0.02
_PARALLEL_LOADS = max(1, min(4, os.cpu_count() or 1))  # models loaded at once at start-up


class ModelSource(Protocol):
    """What the service needs of a repository (``modelport.repository.Repository`` fits).

    ``resolve``/``load`` return a version with ``name``, ``version``, ``model_path``,
    ``signature`` and ``input_example()``; ``list_models`` items have ``name``; ``list_versions``
    items have ``version`` and ``aliases`` (a list of names).
    """

    def resolve(self, ref: str) -> Any: ...

    def load(self, ref: str) -> Any: ...

    def list_models(self) -> list[Any]: ...

    def list_versions(self, name: str) -> list[Any]: ...


@dataclass(eq=False)
class LoadedModel:
    """One loaded, warmed-up version."""

    name: str
    version: int
    signature: Signature
    session: Session
    batcher: DynamicBatcher
    metrics: ModelMetrics
    config: ModelConfig
    loaded_at: float = field(default_factory=time.time)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def record_failure(self) -> None:
        """A request for this version that failed before it reached the batcher (bad input)."""
        self.metrics.failure.inc()


def synthesize_feed(signature: Signature) -> dict[str, np.ndarray]:
    """Zeros (empty strings) with every dynamic dimension set to 1: a warm-up feed."""
    feed: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        shape = tuple(d if isinstance(d, int) else 1 for d in spec.shape)
        if spec.dtype == "str":
            feed[spec.name] = np.full(shape, "", dtype=object)
        else:
            feed[spec.name] = np.zeros(shape, dtype=numpy_dtype(spec.dtype))
    return feed


class _IndexWatch:
    """Tells cheaply whether the repository index changed since the last look."""

    def __init__(self, source: ModelSource) -> None:
        self._conn: sqlite3.Connection | None = None
        path = _index_path(source)
        if path is not None and path.exists():
            try:
                self._conn = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
                )
            except sqlite3.Error:
                self._conn = None

    def stamp(self) -> object:
        if self._conn is None:
            return None
        try:
            return self._conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return time.monotonic()  # cannot tell: treat as changed

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _index_path(source: ModelSource) -> Path | None:
    index = getattr(source, "index", None)
    path = getattr(index, "path", None)
    if isinstance(path, Path):
        return path
    root = getattr(source, "root", None)
    if root is not None:
        with contextlib.suppress(ImportError):
            from modelport.repository.index import INDEX_FILE

            return Path(root) / INDEX_FILE
    return None


class InferenceService:
    """Loads, resolves and runs models. Create, ``await start()``, serve, ``await close()``."""

    def __init__(
        self,
        source: ModelSource,
        refs: Sequence[str] | None = None,
        config: ServeConfig | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.source = source
        self.config = config or ServeConfig()
        self.metrics = metrics or Metrics()
        self.serve_all = not refs
        self._defaults: dict[str, str] = {}  # served model name -> default reference
        for ref in refs or ():
            name = _split_name(ref)
            if name in self._defaults:
                raise UsageError(f"model {name!r} is named twice; serve one reference per model")
            self._defaults[name] = ref
        self._unloaded: set[str] = set()  # explicitly unloaded: not loaded on demand
        self._loaded: dict[tuple[str, int], LoadedModel] = {}
        self._loading: dict[tuple[str, int], asyncio.Future[LoadedModel]] = {}
        self._failed: dict[str, str] = {}  # name -> why its last load failed
        self._cache: dict[str, tuple[Any, float]] = {}
        # (model, version) as requested -> the loaded version it meant, until the next look at
        # the index (or the TTL); dropped with the cache
        self._hot: dict[tuple[str, str | None], tuple[LoadedModel, float]] = {}
        self._watch = _IndexWatch(source)
        self._stamp = self._watch.stamp()
        self._next_check = 0.0
        self._started = False
        self._closing = False
        self._startup: asyncio.Task[None] | None = None
        self.version = _package_version()

    # -- lifecycle ------------------------------------------------------------------------------

    def check_refs(self) -> None:
        """Resolve the named references now (NotFoundError before a port is even bound)."""
        for ref in self._defaults.values():
            self.source.resolve(ref)

    async def start(self, wait: bool = True) -> None:
        """Load and warm up every served model; ``wait=False`` does it in the background (the
        server is live at once and ready when done)."""
        self._startup = asyncio.ensure_future(self._load_all())
        if wait:
            await self._startup

    async def _load_all(self) -> None:
        names = list(self._defaults) if not self.serve_all else self._repository_names()
        # A few at a time: building a session and warming it up run mostly outside the GIL, so
        # on a multi-core machine several models are ready sooner than one after the other.
        gate = asyncio.Semaphore(_PARALLEL_LOADS)

        async def load(name: str) -> None:
            ref = self._defaults.setdefault(name, name)
            async with gate:
                try:
                    await self._ensure(await asyncio.to_thread(self._resolve_uncached, ref))
                except ModelportError as exc:
                    self._failed[name] = str(exc)
                    log.error("cannot load model %s: %s", name, exc)

        await asyncio.gather(*(load(name) for name in names))
        self._started = True
        log.info("ready: %s", ", ".join(m.ref for m in self._loaded.values()) or "no models")

    async def close(self) -> None:
        """Stop taking requests; every batcher finishes what is queued."""
        self._closing = True
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._startup
        models = list(self._loaded.values())
        self._loaded.clear()
        for model in models:
            model.batcher.close()
        for model in models:
            await asyncio.to_thread(model.batcher.join, 30.0)
        self._watch.close()

    def live(self) -> bool:
        return not self._closing

    def ready(self) -> bool:
        return self._started and not self._closing

    # -- resolution -----------------------------------------------------------------------------

    def _repository_names(self) -> list[str]:
        return sorted(info.name for info in self.source.list_models())

    def reference(self, model: str, version: str | None = None) -> str:
        """The repository reference a request means: ``model`` may be ``name``, ``name:3`` or
        ``name@alias``; ``version`` (the ``/versions/{v}`` segment) a number or an alias."""
        if version:
            if "@" in model or ":" in model:
                raise UsageError(
                    f"model {model!r} already names a version; drop the /versions/{version} part"
                )
            return f"{model}:{version}" if version.isdigit() else f"{model}@{version}"
        if "@" in model or ":" in model:
            return model
        return self._defaults.get(model, model)

    def resolve(self, model: str, version: str | None = None) -> Any:
        """The ModelVersion a request means, from the cache when the index has not changed."""
        ref = self.reference(model, version)
        name = _split_name(ref)
        if name in self._unloaded:
            raise UnavailableError(
                f"model {name!r} is unloaded; load it with POST /v2/repository/models/{name}/load"
            )
        if not self.serve_all and name not in self._defaults:
            served = ", ".join(sorted(self._defaults)) or "none"
            raise NotFoundError(f"model {name!r} is not served here; served models: {served}")
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + _CHECK_EVERY_S
            stamp = self._watch.stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                self._cache.clear()
                self._hot.clear()
        hit = self._cache.get(ref)
        if hit is not None and hit[1] > now:
            return hit[0]
        found = self._resolve_uncached(ref)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[ref] = (found, now + self.config.resolve_ttl_s)
        return found

    def _resolve_uncached(self, ref: str) -> Any:
        # NotFoundError -> 404; a malformed name or alias in a URL is a UsageError -> 400.
        return self.source.resolve(ref)

    def hot_model(self, model: str, version: str | None = None) -> LoadedModel | None:
        """The loaded version a request means when it is loaded already, else None (then
        ``model`` loads it). Resolution errors raise, as in ``model``."""
        if self._closing:
            raise UnavailableError("the server is shutting down; retry on another replica")
        key = (model, version)
        hot = self._hot.get(key)
        if hot is not None and time.monotonic() < min(hot[1], self._next_check):
            return hot[0]  # the hot path: no parsing, no lookups
        found = self.resolve(model, version)
        loaded = self._loaded.get((found.name, found.version))
        if loaded is not None:
            self._remember(key, loaded)
        return loaded

    async def model(self, model: str, version: str | None = None) -> LoadedModel:
        """The loaded version a request means, loading and warming it up first if needed."""
        loaded = self.hot_model(model, version)
        if loaded is None:
            loaded = await self._ensure(self.resolve(model, version))
            self._remember((model, version), loaded)
        return loaded

    def _remember(self, key: tuple[str, str | None], loaded: LoadedModel) -> None:
        if len(self._hot) > 10_000:
            self._hot.clear()
        self._hot[key] = (loaded, time.monotonic() + self.config.resolve_ttl_s)

    async def _ensure(self, found: Any) -> LoadedModel:
        key = (found.name, int(found.version))
        loaded = self._loaded.get(key)
        if loaded is not None:
            return loaded
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load(key))
            self._loading[key] = pending
            pending.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(pending)

    async def _load(self, key: tuple[str, int]) -> LoadedModel:
        name, version = key
        config = self.config.for_model(name)
        label = f"{name}:{version}"
        started = time.perf_counter()
        try:
            model = await asyncio.to_thread(self._build, name, version, config, label)
        except NotFoundError:
            raise
        except ModelportError as exc:
            # The server's problem, not the client's: 503 with the reason, also in the index.
            self._failed[name] = f"{label}: {exc}"
            log.error("cannot load %s: %s", label, exc)
            raise UnavailableError(f"model {label} cannot be loaded: {exc}") from exc
        if self._closing:
            model.batcher.close()
            raise UnavailableError("the server is shutting down; retry on another replica")
        model.batcher.start()
        self._loaded[key] = model
        self._failed.pop(name, None)
        log.info("loaded %s in %.0f ms (batching %s)", label,
                 (time.perf_counter() - started) * 1000, "on" if model.batcher.batching else "off")
        return model

    def _build(self, name: str, version: int, config: ModelConfig, label: str) -> LoadedModel:
        found = self.source.load(label)  # checks every file's sha256 once, at load
        session = Session(found.model_path, config.session_options())
        metrics = self.metrics.for_model(name, str(version))
        batcher = DynamicBatcher(session, config, metrics, label)
        if config.warmup:
            example = None
            with contextlib.suppress(ModelportError, OSError, ValueError):
                example = found.input_example()
            if example:
                try:
                    batcher.run_now(example)
                except ModelportError as exc:
                    raise ModelLoadError(f"warm-up of {label} with its input example failed: "
                                         f"{exc}") from exc
            else:
                try:
                    batcher.run_now(synthesize_feed(session.signature))
                except ModelportError as exc:  # zeros may be invalid input: not fatal
                    log.warning("warm-up of %s with zeros failed (%s); serving anyway", label, exc)
        return LoadedModel(name, version, session.signature, session, batcher, metrics, config)

    # -- metadata -------------------------------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        return {
            "name": "modelport",
            "version": self.version,
            "extensions": ["binary_tensor_data", "model_repository"],
        }

    def model_metadata(self, model: str, version: str | None = None) -> dict[str, Any]:
        found = self.resolve(model, version)
        signature: Signature = found.signature
        # One query for both: each version knows its aliases (listing every model would read
        # the whole index for one model's aliases).
        versions = self.source.list_versions(found.name)
        aliases = {alias: str(v.version) for v in versions for alias in v.aliases}
        return {
            "name": found.name,
            "versions": [str(v.version) for v in versions],
            "platform": PLATFORM,
            "inputs": [_tensor(spec) for spec in signature.inputs],
            "outputs": [_tensor(spec) for spec in signature.outputs],
            # not in the protocol, harmless to its clients: which version this is and the aliases
            "version": str(found.version),
            "aliases": aliases,
        }

    def model_ready(self, model: str, version: str | None = None) -> bool:
        try:
            found = self.resolve(model, version)
        except (NotFoundError, UnavailableError):
            return False
        return (found.name, int(found.version)) in self._loaded and not self._closing

    # -- repository extension -------------------------------------------------------------------

    def repository_index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for name in self._repository_names():
            if not self.serve_all and name not in self._defaults:
                continue
            versions = sorted(v for n, v in self._loaded if n == name)
            if versions:
                for version in versions:
                    entries.append({"name": name, "version": str(version), "state": "READY"})
            elif not ready_only:
                entry: dict[str, Any] = {"name": name, "state": "UNAVAILABLE"}
                if name in self._failed:
                    entry["reason"] = self._failed[name]
                elif name in self._unloaded:
                    entry["reason"] = "unloaded"
                else:
                    entry["reason"] = "not loaded yet"
                entries.append(entry)
        return entries

    async def load_model(self, name: str) -> LoadedModel:
        """Serve ``name`` (again) and load its default version now."""
        self._unloaded.discard(name)
        self._defaults.setdefault(name, name)
        try:
            found = await asyncio.to_thread(self._resolve_uncached, self._defaults[name])
            return await self._ensure(found)
        except ModelportError as exc:
            self._failed[name] = str(exc)
            if not self.serve_all and isinstance(exc, NotFoundError):
                self._defaults.pop(name, None)
            raise

    async def unload_model(self, name: str) -> None:
        """Stop serving ``name``: requests get 503 until it is loaded again; queued ones finish."""
        if name not in self._defaults and name not in self._repository_names():
            raise NotFoundError(f"model {name!r} is not in the repository")
        self._unloaded.add(name)
        self._cache.clear()
        self._hot.clear()
        models = [m for key, m in list(self._loaded.items()) if key[0] == name]
        for model in models:
            del self._loaded[(model.name, model.version)]
            model.batcher.close()
        for model in models:
            await asyncio.to_thread(model.batcher.join, 30.0)

    def loaded(self) -> list[LoadedModel]:
        return list(self._loaded.values())


def _tensor(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": spec.wire_shape}


def _split_name(ref: str) -> str:
    for sep in ("@", ":"):
        if sep in ref:
            return ref.split(sep, 1)[0]
    return ref


def _package_version() -> str:
    try:
        return importlib.metadata.version("modelport")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
