"""Serving configuration: server-wide settings and per-model runtime and batching settings.

Per-model settings come from four layers, the more specific winning::

    built-in defaults  <  config file [defaults]  <  command-line options  <  config file [models.NAME]

A config file is TOML (or JSON with the same structure)::

    [defaults]
    max_batch_size = 32
    intra_op_threads = 1

    [models.digits]
    max_queue_delay_ms = 1.0
    batching = false

    [server]
    max_body_bytes = 16777216   # also: auth_token, resolve_ttl_s

Model keys are the fields of ``ModelConfig``: providers, intra_op_threads, inter_op_threads,
optimization_level, batching, max_batch_size, max_queue_delay_ms, max_queue_size, inline_max_ms,
warmup. Command-line server options win over ``[server]``; the auth token may also come from
``MODELPORT_AUTH_TOKEN``. Unknown keys are a usage error that lists the known ones, so a typo never goes unnoticed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from modelport.errors import UsageError
from modelport.runtime import SessionOptions

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ModelConfig", "ServeConfig", "load_config"]

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ModelConfig:
    """How one model version is run: ONNX Runtime options and dynamic batching."""

    providers: tuple[str, ...] = ()  # empty: CPU
    intra_op_threads: int = 0  # 0: ONNX Runtime's default (one per physical core)
    inter_op_threads: int = 0
    optimization_level: str = "all"  # disable | basic | extended | all
    # Coalesce concurrent requests into one run; applies only to models whose inputs all have a
    # dynamic first (batch) axis, the others always run one request at a time.
    batching: bool = True
    max_batch_size: int = 64  # rows per coalesced run
    # How long the first request of a batch may wait for company. 0 is "greedy": a batch is what
    # queued up while the previous run was busy, so an idle server adds no latency at all.
    max_queue_delay_ms: float = 0.0
    max_queue_size: int = 512  # requests waiting for the model's worker; beyond that 503
    # Models whose recent runs took at most this long run (batched the same way) on the event
    # loop instead of their worker thread: a hand-off to a thread and back costs more than a
    # small model's whole run. 0: always the worker thread. See serve/batching.py.
    inline_max_ms: float = 1.0
    warmup: bool = True  # run the input example (or synthesized zeros) before reporting ready

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise UsageError("max_batch_size must be at least 1")
        if self.max_queue_delay_ms < 0:
            raise UsageError("max_queue_delay_ms must not be negative")
        if self.inline_max_ms < 0:
            raise UsageError("inline_max_ms must not be negative")
        if self.max_queue_size < 1:
            raise UsageError("max_queue_size must be at least 1")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise UsageError("thread counts must not be negative (0 means ONNX Runtime's default)")
        if self.optimization_level not in ("disable", "basic", "extended", "all"):
            raise UsageError(
                f"unknown optimization level {self.optimization_level!r}; use one of "
                "disable, basic, extended, all"
            )

    def session_options(self) -> SessionOptions:
        return SessionOptions(
            providers=self.providers,
            intra_op_threads=self.intra_op_threads,
            inter_op_threads=self.inter_op_threads,
            optimization_level=self.optimization_level,
        )

    def updated(self, values: Mapping[str, Any], where: str = "options") -> ModelConfig:
        """A copy with ``values`` applied; unknown keys and wrong types are usage errors."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if value is None:
                continue
            if key not in known:
                raise UsageError(
                    f"unknown model setting {key!r} in {where}; known: {', '.join(sorted(known))}"
                )
            changes[key] = _coerce(key, value, getattr(self, key), where)
        return replace(self, **changes) if changes else self


def _coerce(key: str, value: Any, current: Any, where: str) -> Any:
    try:
        if key == "providers":
            if isinstance(value, str):
                value = [p for p in value.split(",") if p]
            return tuple(str(p) for p in value)
        if isinstance(current, bool):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if isinstance(current, int):
            if isinstance(value, bool) or int(value) != value:
                raise ValueError
            return int(value)
        if isinstance(current, float):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise UsageError(f"invalid value {value!r} for {key} in {where}") from None


@dataclass(frozen=True)
class ServeConfig:
    """Server-wide settings plus the per-model layers described in the module docstring."""

    defaults: ModelConfig = field(default_factory=ModelConfig)
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    auth_token: str | None = None  # bearer token for everything but /v2/health/*
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Resolved references are cached this long at most; a change of the repository's index
    # (seen by stat-ing its files) drops the cache at once, so an alias move is seen next request.
    resolve_ttl_s: float = 1.0

    def for_model(self, name: str) -> ModelConfig:
        specific = self.models.get(name)
        if not specific:
            return self.defaults
        return self.defaults.updated(specific, where=f"config [models.{name}]")

    def with_options(self, **options: Any) -> ServeConfig:
        """Apply command-line model options (None: not given) on top of the file's defaults."""
        return replace(self, defaults=self.defaults.updated(options, where="command-line options"))


def load_config(path: str | Path | None, **server: Any) -> ServeConfig:
    """Read a TOML/JSON config file (None: built-in defaults) and apply server-wide ``server``
    settings (auth_token, max_body_bytes, resolve_ttl_s) given as keyword arguments."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read(Path(path))
    known = {"defaults", "models", "server"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(
            f"unknown section(s) {unknown} in {path}; use [defaults], [models.NAME] and [server]"
        )
    defaults = ModelConfig().updated(data.get("defaults") or {}, where=f"{path} [defaults]")
    models = data.get("models") or {}
    if not isinstance(models, Mapping) or not all(isinstance(v, Mapping) for v in models.values()):
        raise UsageError(f"[models] in {path} must hold one table per model name")
    for name, values in models.items():  # fail on typos now, not at the first request
        defaults.updated(values, where=f"{path} [models.{name}]")
    settings: dict[str, Any] = dict(data.get("server") or {})
    settings.update({k: v for k, v in server.items() if v is not None})
    if settings.get("auth_token") is None and os.environ.get("MODELPORT_AUTH_TOKEN"):
        settings["auth_token"] = os.environ["MODELPORT_AUTH_TOKEN"]
    allowed = {"auth_token", "max_body_bytes", "resolve_ttl_s"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise UsageError(f"unknown server setting(s) {unknown}; known: {sorted(allowed)}")
    config = ServeConfig(defaults=defaults, models=dict(models), **settings)
    if config.max_body_bytes < 1:
        raise UsageError("max_body_bytes must be positive")
    return config


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read config file {str(path)!r}: {exc.strerror}") from exc
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {str(path)!r} is not valid: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"config file {str(path)!r} must hold a table/object at the top")
    return data
