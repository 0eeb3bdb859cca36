"""Batch scoring: a data file in, a predictions file out, streamed in chunks.

``predict(model, input, output)`` reads the input file a chunk of rows at a time, maps its
columns or arrays onto the model's inputs (by the signature), runs the chunk through ONNX Runtime
(or a running modelport server), and appends the outputs to the output file, so that a file larger
than memory can be scored. What streams and what does not:

- ``.npy``: memory-mapped, streams.
- ``.csv``, ``.jsonl``, ``.parquet``: read in chunks, streams.
- ``.npz``: each array is loaded whole when first touched (numpy decompresses members whole), then
  scored in chunks; use ``.npy`` for inputs larger than memory.
- ``.json``: parsed whole (JSON has no streaming form); use ``.jsonl`` for large files.

Outputs go to the same family of formats, picked by the output file's suffix: ``.npy`` (one
output), ``.npz`` (one array per output), ``.csv``/``.parquet``/``.jsonl`` (a column per output;
an output with several values per row becomes columns ``name_0 .. name_k``, in C order) and
``.json`` (an object of arrays, built in memory).

Tabular inputs map onto the signature the same way back: a column named after each input (a list
per cell for a multi-value input), or ``name_0 .. name_k`` columns, or, for a model with a single
input, all numeric columns in file order.

The output is written to a temporary file beside the destination and renamed into place only
when every row was scored, so a failure never leaves half a file.

Modules: ``readers`` (files -> chunks), ``feed`` (chunk -> model inputs), ``writers`` (outputs ->
files); this one ties them together, locally or against a server.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport._files import atomic_path
from modelport.errors import InputError, NotFoundError, UsageError
from modelport.predict.feed import FeedMapper
from modelport.predict.readers import INPUT_SUFFIXES, open_reader
from modelport.predict.writers import OUTPUT_SUFFIXES, make_writer
from modelport.signature import Signature, TensorSpec

if TYPE_CHECKING:
    from modelport.repository import ModelVersion

__all__ = [
    "INPUT_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "PredictSummary",
    "ResolvedModel",
    "predict",
    "resolve_model_file",
]

Scorer = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
# A missing path with one of these suffixes is a mistyped file, not a model name with a dot.
_MODEL_SUFFIXES = (".onnx", ".pt", ".pth", ".ckpt", ".keras", ".h5", ".pkl", ".joblib", ".pb")


# --------------------------------------------------------------------------- model references
@dataclass(frozen=True)
class ResolvedModel:
    """A model file to run, and the repository version it came from (None for a plain file)."""

    path: Path
    label: str  # "name:3" or the file name, for messages and reports
    version: ModelVersion | None = None


def resolve_model_file(
    model: str | Path, repo: str | Path | None = None, *, require_onnx: bool = True
) -> ResolvedModel:
    """``FILE.onnx`` (or any existing file) as it is; anything else is a repository reference.

    Repository versions are loaded with their checksums checked, so a tampered package is refused
    before it is run, viewed or deployed. ``require_onnx=False`` accepts any model file (Netron
    shows framework files too).
    """
    text = str(model)
    if not text.strip():
        raise UsageError("no model given; name an .onnx file or a reference: name, name:3, name@alias")
    path = Path(text).expanduser()
    if path.is_file():
        if require_onnx and path.suffix.lower() != ".onnx":
            raise UsageError(
                f"{text!r} is not an ONNX model; convert it first: modelport convert {text} "
                "(or register it: modelport models register ...)"
            )
        return ResolvedModel(path, path.name)
    if path.is_dir():
        raise UsageError(f"{text!r} is a directory; give a model file or a repository reference")
    if path.suffix.lower() in _MODEL_SUFFIXES or "/" in text or "\\" in text:
        raise NotFoundError(f"model file {text!r} does not exist")
    from modelport.repository import Repository

    version = Repository(root=repo, create=False).load(text)
    return ResolvedModel(Path(version.model_path), version.ref, version)


# --------------------------------------------------------------------------- public API
@dataclass
class PredictSummary:
    rows: int
    chunks: int
    seconds: float
    output: Path
    outputs: list[str]
    model: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 4),
            "rows_per_second": round(self.rows / self.seconds, 1) if self.seconds else None,
            "output": str(self.output),
            "outputs": self.outputs,
            "model": self.model,
            "notes": self.notes,
        }


def predict(
    model: str | Path,
    input: str | Path,
    output: str | Path,
    *,
    repo: str | Path | None = None,
    server: str | None = None,
    batch_size: int = 1024,
    output_names: Sequence[str] | None = None,
    progress: bool = True,
    threads: int = 0,
) -> PredictSummary:
    """Score every row of ``input`` with ``model`` (a repository reference or an .onnx file).

    With ``server`` (a modelport server's base URL) the rows are sent to that server instead of
    being run here; the output is the same.
    """
    input_path, output_path = Path(input), Path(output)
    _check_paths(input_path, output_path)
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")

    if server:
        _check_server(server)
        label = str(model)
        if Path(label).suffix.lower() == ".onnx":
            raise UsageError(
                "with --server give the model's name on the server (e.g. 'digits:2'), not a file"
            )
        signature = _remote_signature(server, label)
    else:
        from modelport.runtime import Session, SessionOptions

        resolved = resolve_model_file(model, repo)
        session = Session(resolved.path, SessionOptions(intra_op_threads=threads))
        signature, label = session.signature, resolved.label

    wanted = list(output_names) if output_names else signature.output_names
    for name in wanted:
        signature.output(name)  # unknown names fail before anything is read
    if server:
        scorer = _remote_scorer(server, label, wanted)
    else:
        run_checked = session.run_checked
        scorer = lambda feed: run_checked(feed, wanted)  # noqa: E731
    fixed_batch = _fixed_batch(signature)
    if fixed_batch is not None:
        batch_size = fixed_batch

    reader = open_reader(input_path, batch_size)
    notes = list(reader.notes)
    started = time.perf_counter()
    rows = chunks = 0
    mapper: FeedMapper | None = None
    with atomic_path(output_path) as tmp, make_writer(output_path, tmp, wanted) as writer:
        with progress_bar(progress, reader.total, input_path.name) as advance:
            for chunk in reader.chunks:
                if mapper is None:
                    mapper = FeedMapper.plan(signature, chunk)
                    notes.extend(mapper.notes)
                feed = mapper.feed(chunk)
                n = _rows_of(feed)
                if n == 0:
                    continue
                if fixed_batch is not None and n != fixed_batch:
                    raise InputError(
                        f"the model has a fixed batch of {fixed_batch} rows and the last chunk "
                        f"has {n}; give a file whose row count is a multiple of {fixed_batch}"
                    )
                result = scorer(feed)
                writer.write(_check_outputs({k: result[k] for k in wanted}, n))
                rows += n
                chunks += 1
                advance(n)
        if rows == 0:
            raise InputError(f"input file {str(input_path)!r} has no rows to score")
    return PredictSummary(
        rows, chunks, time.perf_counter() - started, output_path, wanted, label, notes
    )


def _check_paths(input_path: Path, output_path: Path) -> None:
    if input_path.is_dir():
        raise UsageError(f"input {str(input_path)!r} is a directory; give a data file")
    if input_path.suffix.lower() not in INPUT_SUFFIXES:
        raise UsageError(
            f"unsupported input file {input_path.name!r}; use one of {', '.join(INPUT_SUFFIXES)}"
        )
    if output_path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UsageError(
            f"unsupported output file {output_path.name!r}; use one of {', '.join(OUTPUT_SUFFIXES)}"
        )
    if not input_path.is_file():
        raise NotFoundError(f"input file {str(input_path)!r} does not exist")
    if output_path.exists() and output_path.resolve() == input_path.resolve():
        raise UsageError("the output file must not be the input file")
    if output_path.is_dir():
        raise UsageError(f"output {str(output_path)!r} is a directory; give a file name")


def _fixed_batch(signature: Signature) -> int | None:
    """A model exported with a fixed batch (e.g. 1) is fed exactly that many rows at a time."""
    for spec in signature.inputs:
        if spec.shape and isinstance(spec.shape[0], int):
            return spec.shape[0]
    return None


def _rows_of(feed: Mapping[str, np.ndarray]) -> int:
    counts = {name: (a.shape[0] if a.ndim else 1) for name, a in feed.items()}
    if len(set(counts.values())) > 1:
        raise InputError(
            f"inputs have different row counts {counts}; every input needs one row each"
        )
    return next(iter(counts.values()), 0)


def _check_outputs(outputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != rows:
            raise InputError(
                f"output {name!r} has shape {list(array.shape)}, not one row per input row; "
                "predict needs outputs with a batch axis (choose others with --output-name)"
            )
    return outputs


# --------------------------------------------------------------------------- remote scoring
def _check_server(server: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"--server {server!r} is not an http(s) URL; give the server's base URL, "
            "e.g. http://127.0.0.1:8000"
        )


def _remote_scorer(server: str, ref: str, outputs: list[str]) -> Scorer:
    try:
        from modelport.serve.client import remote_predict
    except ImportError as exc:
        raise UsageError(
            "this modelport has no server client; run predict without --server"
        ) from exc
    token = os.environ.get("MODELPORT_AUTH_TOKEN") or None  # same variable as 'modelport serve'

    def score(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(remote_predict(server, ref, dict(feed), outputs, token=token))

    return score


def _remote_signature(server: str, ref: str) -> Signature:
    """The model's signature as the server describes it (V2 model metadata)."""
    try:
        from modelport.serve import client
    except ImportError as exc:
        raise UsageError(
            "this modelport has no server client; run predict without --server"
        ) from exc
    fetch = getattr(client, "remote_signature", None)
    if fetch is not None:
        return fetch(server, ref)  # type: ignore[no-any-return]
    return _v2_metadata_signature(server, ref)


def _v2_metadata_signature(server: str, ref: str) -> Signature:
    import urllib.error
    import urllib.parse
    import urllib.request

    from modelport.errors import UnauthorizedError, UnavailableError
    from modelport.signature import numpy_dtype_from_v2

    # The server takes the reference itself as the model name: "name", "name:3", "name@alias".
    url = f"{server.rstrip('/')}/v2/models/{urllib.parse.quote(ref, safe='@:')}"
    request = urllib.request.Request(url)
    token = os.environ.get("MODELPORT_AUTH_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            meta = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(detail).get("error", detail)
        if exc.code == 404:
            raise NotFoundError(f"server: {detail}") from exc
        kind = {401: UnauthorizedError, 503: UnavailableError}.get(exc.code, InputError)
        raise kind(f"server answered {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UsageError(
            f"cannot reach the server at {server}: {reason}; is 'modelport serve' running there?"
        ) from exc

    def specs(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(
                item["name"],
                numpy_dtype_from_v2(item["datatype"]),
                tuple(d if d >= 0 else None for d in item.get("shape", [])),
            )
            for item in items
        )

    return Signature(specs(meta.get("inputs", [])), specs(meta.get("outputs", [])))


# --------------------------------------------------------------------------- progress, text
class progress_bar:  # noqa: N801 - used as a context manager like a function
    """A rich progress bar on stderr counting rows; indeterminate when the total is unknown."""

    def __init__(self, enabled: bool, total: int | None, label: str) -> None:
        self.enabled, self.total, self.label = enabled, total, label
        self._progress: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]scoring[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._progress.start()
        task = self._progress.add_task(self.label, total=self.total)
        return lambda n: self._progress.advance(task, n)

    def __exit__(self, *_: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
