"""Commands of the end-to-end story: predict, bench, view, deploy.

Each command parses its options and calls the Python API (modelport.predict, .benchmark, .view,
.deploy); errors from the error tree are rendered by the ``cli`` group.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from modelport.cli._options import repo_option

__all__ = ["COMMANDS"]

def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not numbers or any(n < 1 for n in numbers):
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return numbers


# --------------------------------------------------------------------------- predict
@click.command("predict")
@click.argument("model")
@click.option(
    "--input",
    "-i",
    "input_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Rows to score: .npy .npz .csv .parquet .json .jsonl",
)
@click.option(
    "--output",
    "-o",
    "output_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Where predictions go; the suffix picks the format (.npy .npz .csv .parquet .json .jsonl).",
)
@repo_option("repo")
@click.option("--server", default=None, help="Score on a running modelport server (base URL).")
@click.option("--batch-size", type=int, default=1024, show_default=True, help="Rows per chunk.")
@click.option("--output-name", multiple=True, help="Only these outputs (repeatable).")
@click.option("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: default).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def predict_command(
    model: str,
    input_path: Path,
    output_path: Path,
    repo: Path | None,
    server: str | None,
    batch_size: int,
    output_name: tuple[str, ...],
    threads: int,
    quiet: bool,
) -> None:
    """Score a data file with MODEL (a repository reference or an .onnx file), in chunks."""
    from modelport.predict import predict

    summary = predict(
        model,
        input_path,
        output_path,
        repo=repo,
        server=server,
        batch_size=batch_size,
        output_names=output_name or None,
        progress=not quiet,
        threads=threads,
    )
    rate = summary.rows / summary.seconds if summary.seconds else float("inf")
    console = Console()
    console.print(
        f"scored [bold]{summary.rows}[/] rows with {summary.model} in {summary.seconds:.2f} s "
        f"({rate:,.0f} rows/s, {summary.chunks} chunk(s)) -> {summary.output} "
        f"[dim](outputs: {', '.join(summary.outputs)})[/]",
        highlight=False,
    )
    for note in summary.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)


# --------------------------------------------------------------------------- bench
@click.command("bench")
@click.argument("model")
@repo_option("repo")
@click.option(
    "--native",
    default=None,
    help="The original model file (.pt, .ckpt, .keras, .pkl, ...) to compare against.",
)
@click.option("--framework", default=None, help="Framework of --native when not detected.")
@click.option("--class", "model_class", default=None, help="package.module:Class for --native.")
@click.option("--batch-sizes", callback=_int_list, default="1,8,32", show_default=True)
@click.option("--threads", callback=_int_list, default="1", show_default=True)
@click.option("--duration", type=float, default=None, help="Seconds per configuration [1].")
@click.option("--iterations", type=int, default=None, help="Calls per configuration.")
@click.option("--warmup", type=int, default=3, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None)
def bench_command(
    model: str,
    repo: Path | None,
    native: str | None,
    framework: str | None,
    model_class: str | None,
    batch_sizes: list[int],
    threads: list[int],
    duration: float | None,
    iterations: int | None,
    warmup: int,
    json_path: Path | None,
    plot_path: Path | None,
) -> None:
    """Latency percentiles and throughput of MODEL in ONNX Runtime (and of its original)."""
    from modelport.benchmark import benchmark

    if plot_path is not None and plot_path.suffix.lower() != ".png":
        raise click.BadParameter(
            f"{str(plot_path)!r}: the plot is a PNG file, give a name ending in .png",
            param_hint="'--plot'",
        )
    console = Console(stderr=True)
    with console.status("benchmarking") as status:
        result = benchmark(
            model,
            repo=repo,
            native=native,
            framework=framework,
            model_class=model_class,
            batch_sizes=batch_sizes,
            threads=threads,
            duration=duration,
            iterations=iterations,
            warmup=warmup,
            progress=lambda text: status.update(f"benchmarking {text}"),
        )
    out = Console()
    out.print(result.render())
    for note in result.notes:
        out.print(f"[dim]note: {note}[/]", highlight=False)
    if json_path is not None:
        out.print(f"results: {result.save_json(json_path)}", highlight=False)
    if plot_path is not None:
        out.print(f"chart: {result.plot(plot_path)}", highlight=False)


# --------------------------------------------------------------------------- view
@click.command("view")
@click.argument("model")
@repo_option("repo")
@click.option("--port", type=int, default=None, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser (headless use).")
def view_command(model: str, repo: Path | None, port: int | None, no_browser: bool) -> None:
    """Open MODEL (a repository reference or a model file) in Netron on a loopback address."""
    from modelport.view import ViewServer, view

    def ready(server: ViewServer) -> None:
        click.echo(f"Netron is showing {server.label} at {server.url}  (Ctrl-C to stop)")

    view(model, repo=repo, port=port, browse=not no_browser, on_ready=ready)


# --------------------------------------------------------------------------- deploy
@click.command("deploy")
@click.argument("ref")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="New directory.")
@repo_option("repo")
@click.option("--image", default=None, help="Image name (default: modelport-NAME:VERSION).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--wheel", type=click.Path(path_type=Path), default=None, help="modelport wheel.")
@click.option("--base-image", default=None, help="Base image (default: python:X.Y-slim).")
@click.option("--force", is_flag=True, help="Replace a non-empty --out directory.")
def deploy_command(
    ref: str,
    out: Path,
    repo: Path | None,
    image: str | None,
    port: int,
    wheel: Path | None,
    base_image: str | None,
    force: bool,
) -> None:
    """Write a container build context and Kubernetes manifests for model version REF."""
    from modelport.deploy import deploy

    context = deploy(
        ref,
        out,
        repo=repo,
        image=image,
        port=port,
        wheel=wheel,
        base_image=base_image,
        force=force,
    )
    console = Console(highlight=False)
    console.print(f"build context for {context.source} written to [bold]{context.directory}[/]")
    for name in context.files:
        if not name.startswith("models/"):
            console.print(f"  {name}")
    console.print(f"  models/  (a modelport repository serving {context.model})")
    for note in context.notes:
        console.print(f"[dim]note: {note}[/]")
    console.print("next:")
    console.print(f"  docker build -t {context.image} {context.directory}")
    console.print(f"  docker run --rm -p {context.port}:{context.port} {context.image}")
    console.print(f"  kubectl apply -f {context.directory / 'k8s' / 'deployment.yaml'}")


# `demo` (the README's first command) is registered by modelport.cli.demo; story commands that
# belong here go into this list.
COMMANDS: list[click.Command] = [predict_command, bench_command, view_command, deploy_command]
