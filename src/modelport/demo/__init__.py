"""``modelport demo``: the whole story on scikit-learn's bundled digits, offline, in a minute.

Train a Lightning CNN and a scikit-learn pipeline -> convert and verify both -> register them ->
serve them -> call the server through the Open Inference Protocol and the simple JSON endpoint ->
compare accuracy and speed with the original frameworks.
"""

from __future__ import annotations

import json
import logging
import socket
import statistics
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from modelport._lazy import require
from modelport.errors import UsageError

__all__ = ["DemoResult", "run_demo"]


@dataclass
class ModelOutcome:
    name: str
    framework: str
    ref: str
    original_accuracy: float
    onnx_accuracy: float
    served_accuracy: float
    parity_passed: bool
    max_abs_error: float
    original_ms: float
    onnx_ms: float

    @property
    def speedup(self) -> float:
        return self.original_ms / self.onnx_ms if self.onnx_ms else float("nan")


@dataclass
class DemoResult:
    models: list[ModelOutcome] = field(default_factory=list)
    base_url: str = ""
    repo: str = ""

    @property
    def ok(self) -> bool:
        return all(
            m.parity_passed and m.original_accuracy == m.onnx_accuracy == m.served_accuracy
            for m in self.models
        )


def _load_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # N x 1 x 8 x 8
    return tuple(  # type: ignore[return-value]
        train_test_split(images, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
    )


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: first calls pay for lazy initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


@contextmanager
def _serving(repo: Any, sock: socket.socket) -> Iterator[str]:
    """Serve every model of ``repo`` on ``sock`` from a background thread; stop gracefully."""
    import threading

    from modelport.serve import InferenceService, create_app, make_server

    host, bound_port = sock.getsockname()[:2]
    app = create_app(InferenceService(repo), wait_for_models=True)
    server = make_server(app, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _check_arguments(epochs: int, host: str, port: int) -> None:
    """Refuse bad arguments and missing extras before a minute of training, not after it."""
    if epochs < 1:
        raise UsageError(f"--epochs must be 1 or more, got {epochs}")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 (a free port) and 65535, got {port}")
    if not host.strip():
        raise UsageError("--host must not be empty; use e.g. 127.0.0.1")
    for module, extra in (
        ("torch", "torch"),
        ("lightning", "lightning"),
        ("sklearn", "sklearn"),
        ("starlette", "serve"),
        ("uvicorn", "serve"),
    ):
        require(module, extra)


def run_demo(
    *,
    repo_dir: str | Path | None = None,
    epochs: int = 5,
    short: bool = False,
    host: str = "127.0.0.1",
    port: int = 0,
    keep_serving: bool = False,
    console: Console | None = None,
) -> DemoResult:
    """Run the story; ``short`` trains one epoch and times fewer runs (used by the tests)."""
    _check_arguments(epochs, host, port)
    from modelport.serve import bind_socket

    # Claim the port first: a port in use is a one-line error before a minute of work, not after.
    sock = bind_socket(host, port)
    try:
        return _run(sock, repo_dir, epochs, short, keep_serving, console or Console())
    finally:
        sock.close()


def _run(
    sock: socket.socket,
    repo_dir: str | Path | None,
    epochs: int,
    short: bool,
    keep_serving: bool,
    console: Console,
) -> DemoResult:
    import torch

    from modelport import convert
    from modelport.repository import Repository
    from modelport.runtime import Session, SessionOptions

    torch.set_num_threads(1)
    repeats = 20 if short else 200
    epochs = 1 if short else epochs
    workdir = Path(repo_dir) if repo_dir else Path(tempfile.mkdtemp(prefix="modelport-demo-"))
    repo = Repository(workdir)
    result = DemoResult(repo=str(workdir))

    console.rule("[bold]1. Train on scikit-learn's bundled digits (no downloads)")
    x_train, x_test, y_train, y_test = _load_digits()
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with warnings.catch_warnings():  # Lightning's own deprecation noise, not the user's
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        from modelport.demo.models import train_cnn
    for name in ("lightning.pytorch", "lightning.fabric", "lightning_utilities"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "GPU available: False", tips

    cnn = train_cnn(x_train, y_train, epochs=epochs)
    flat_train = x_train.reshape(len(x_train), -1)
    flat_test = x_test.reshape(len(x_test), -1)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    pipeline.fit(flat_train, y_train)
    plural = "s" if epochs != 1 else ""
    console.print(f"trained a Lightning CNN ({epochs} epoch{plural}) and a scikit-learn pipeline")

    console.rule("[bold]2. Convert to ONNX and verify parity")
    with console.status("converting and verifying the CNN (torch.export)..."):
        cnn_result = convert(cnn)  # Lightning's example_input_array is the sample
    with console.status("converting and verifying the scikit-learn pipeline..."):
        sk_result = convert(pipeline, sample=flat_test[:16])
    for title, conversion in (("Lightning CNN", cnn_result), ("scikit-learn pipeline", sk_result)):
        _print_verification(console, title, conversion)

    console.rule("[bold]3. Register in the model repository")
    cnn_version = repo.register(cnn_result, "digits-cnn", description="Lightning CNN on digits")
    sk_version = repo.register(sk_result, "digits-sklearn", description="Scaler + LogisticRegression")
    repo.set_alias("digits-cnn", "production", cnn_version.version)
    repo.set_alias("digits-sklearn", "production", sk_version.version)
    console.print(f"registered {cnn_version.ref} and {sk_version.ref} in {workdir}")

    console.rule("[bold]4. Accuracy and speed: original framework vs ONNX Runtime")
    console.print(f"timing {repeats} one-row predictions per model, one thread each")
    cnn_session = Session(cnn_version.model_path, SessionOptions(intra_op_threads=1))
    sk_session = Session(sk_version.model_path, SessionOptions(intra_op_threads=1))
    cnn_in = cnn_session.signature.inputs[0].name
    sk_in = sk_session.signature.inputs[0].name
    with torch.no_grad():
        torch_logits = cnn(torch.from_numpy(x_test)).numpy()
    onnx_logits = cnn_session.run({cnn_in: x_test})[cnn_session.signature.output_names[0]]
    sk_feed = {sk_in: flat_test.astype(np.float32)}
    onnx_labels = sk_session.run(sk_feed)["label"]
    one_image = x_test[:1]
    one_row = flat_test[:1]
    with torch.no_grad():
        torch_ms = _median_ms(lambda: cnn(torch.from_numpy(one_image)), repeats)
    cnn_onnx_ms = _median_ms(lambda: cnn_session.run({cnn_in: one_image}), repeats)
    sk_ms = _median_ms(lambda: pipeline.predict_proba(one_row), repeats)
    sk_onnx_ms = _median_ms(lambda: sk_session.run({sk_in: one_row.astype(np.float32)}), repeats)

    console.rule("[bold]5. Serve, and call the server")
    with _serving(repo, sock) as base_url:
        result.base_url = base_url
        v2 = _post_json(
            f"{base_url}/v2/models/digits-cnn/infer",
            {
                "inputs": [
                    {
                        "name": cnn_in,
                        "shape": list(x_test.shape),
                        "datatype": "FP32",
                        "data": x_test.ravel().tolist(),
                    }
                ]
            },
        )
        served_logits = np.asarray(v2["outputs"][0]["data"], dtype=np.float32).reshape(
            v2["outputs"][0]["shape"]
        )
        v1 = _post_json(
            f"{base_url}/v1/models/digits-sklearn@production:predict",
            {"instances": flat_test.tolist()},
        )
        served_labels = np.asarray([row["label"] for row in v1["predictions"]])
        console.print(f"POST {base_url}/v2/models/digits-cnn/infer -> {len(served_logits)} rows")
        console.print(
            f"POST {base_url}/v1/models/digits-sklearn@production:predict -> "
            f"{len(served_labels)} predictions"
        )

        def accuracy(predicted: np.ndarray) -> float:
            return float((predicted == y_test).mean())

        result.models = [
            ModelOutcome(
                "digits-cnn",
                "lightning",
                cnn_version.ref,
                accuracy(torch_logits.argmax(1)),
                accuracy(onnx_logits.argmax(1)),
                accuracy(served_logits.argmax(1)),
                bool(cnn_result.report),
                float(np.abs(torch_logits - onnx_logits).max()),
                torch_ms,
                cnn_onnx_ms,
            ),
            ModelOutcome(
                "digits-sklearn",
                "sklearn",
                sk_version.ref,
                accuracy(pipeline.predict(flat_test)),
                accuracy(onnx_labels),
                accuracy(served_labels),
                bool(sk_result.report),
                float(
                    np.abs(pipeline.predict_proba(flat_test) - sk_session.run(sk_feed)["probabilities"]).max()
                ),
                sk_ms,
                sk_onnx_ms,
            ),
        ]
        console.rule("[bold]6. Results")
        for table in _summary_tables(result):
            console.print(table)
        console.print(
            f"\nServer: {base_url}   metadata: {base_url}/v2/models/digits-cnn   "
            f"metrics: {base_url}/metrics   docs: {base_url}/docs"
        )
        if keep_serving:
            console.print("[bold]Serving until Ctrl-C[/bold]")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    console.print("server stopped cleanly" if not keep_serving else "stopped")
    return result


def _print_verification(console: Console, title: str, conversion: Any) -> None:
    """The report in a few lines; ``modelport verify`` prints the full table."""
    report = conversion.report
    exporter = conversion.source.get("exporter")
    console.print(
        f"[bold]{title}[/bold] -> ONNX ({conversion.framework}"
        + (f", {exporter} exporter" if exporter else "")
        + f"): {'[green]' if report else '[red]'}{report.summary()}"
    )
    checks = ", ".join(c.name for c in report.checks if c.passed)
    console.print(f"  checks passed: {checks}")
    for name, comp in report.worst().items():
        labels = (
            f", labels agree {comp.label_agreement:.1%}" if comp.label_agreement is not None else ""
        )
        console.print(
            f"  output {name}: worst max |error| {comp.max_abs_error or 0:.2e} "
            f"(atol {comp.atol:g}, rtol {comp.rtol:g}){labels}"
        )


def _summary_tables(result: DemoResult) -> tuple[Table, Table]:
    accuracy = Table(title="accuracy on the 450 held-out digits")
    speed = Table(title="one-row latency, median (1 thread each)")
    for column in ("model", "original", "ONNX Runtime", "served (HTTP)", "max |diff|"):
        accuracy.add_column(column, justify="left" if column == "model" else "right")
    for column in ("model", "original", "ONNX Runtime", "speed-up"):
        speed.add_column(column, justify="left" if column == "model" else "right")
    for m in result.models:
        model = f"{m.ref} ({m.framework})"
        accuracy.add_row(
            model,
            f"{m.original_accuracy:.4f}",
            f"{m.onnx_accuracy:.4f}",
            f"{m.served_accuracy:.4f}",
            ("[green]" if m.parity_passed else "[red]") + f"{m.max_abs_error:.1e}",
        )
        speed.add_row(model, f"{m.original_ms:.3f} ms", f"{m.onnx_ms:.3f} ms", f"{m.speedup:.1f}x")
    return accuracy, speed
