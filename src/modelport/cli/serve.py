"""``modelport serve``: the repository's models over HTTP (Open Inference Protocol V2)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from modelport.cli._options import repo_option

__all__ = ["COMMANDS", "serve"]


@click.command("serve")
@click.argument("refs", nargs=-1, metavar="[REF]...")
@repo_option()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port, printed at start).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML/JSON file with [defaults] and [models.NAME] settings (these override "
              "the options below for the named model).")
@click.option("--providers", help="Execution providers, comma-separated (e.g. cuda,cpu).")
@click.option("--intra-op-threads", type=click.IntRange(0), help="ONNX Runtime threads per run "
              "(0: one per core).")
@click.option("--inter-op-threads", type=click.IntRange(0), help="ONNX Runtime parallel nodes.")
@click.option("--optimization-level", type=click.Choice(["disable", "basic", "extended", "all"]),
              help="Graph optimization level.")
@click.option("--batching/--no-batching", default=None,
              help="Coalesce concurrent requests (default on, where inputs have a batch axis).")
@click.option("--max-batch-size", type=click.IntRange(1), help="Rows per batched run [64].")
@click.option("--max-queue-delay-ms", type=click.FloatRange(0),
              help="How long a batch may wait for more requests [0: never wait].")
@click.option("--max-queue-size", type=click.IntRange(1),
              help="Requests waiting per model before 503 [512].")
@click.option("--inline-max-ms", type=click.FloatRange(0),
              help="Models whose runs take at most this long run, batched, on the event "
              "loop instead of a worker thread [1.0; 0: always the worker].")
@click.option("--auth-token", envvar="MODELPORT_AUTH_TOKEN",
              help="Require 'Authorization: Bearer TOKEN' on all but /v2/health/* "
              "(or set MODELPORT_AUTH_TOKEN).")
@click.option("--max-body-bytes", type=click.IntRange(1),
              help="Request body limit, larger gets 413 [64 MiB].")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="Log every request (costs throughput).")
@click.option("--graceful-timeout", default=30.0, show_default=True, type=click.FloatRange(0),
              help="Seconds to finish in-flight requests on SIGTERM/SIGINT.")
def serve(
    refs: tuple[str, ...],
    repo_dir: Path | None,
    host: str,
    port: int,
    config_path: Path | None,
    providers: str | None,
    intra_op_threads: int | None,
    inter_op_threads: int | None,
    optimization_level: str | None,
    batching: bool | None,
    max_batch_size: int | None,
    max_queue_delay_ms: float | None,
    max_queue_size: int | None,
    inline_max_ms: float | None,
    auth_token: str | None,
    max_body_bytes: int | None,
    log_level: str,
    access_log: bool,
    graceful_timeout: float,
) -> None:
    """Serve REF... (name, name:3 or name@alias), or every model of the repository.

    Open Inference Protocol V2 at /v2 (JSON and binary tensors, model repository extension),
    simple JSON at /v1/models/REF:predict, Prometheus metrics at /metrics, OpenAPI at
    /openapi.json. A request for NAME follows the reference given here at request time, so
    moving an alias switches traffic without a restart.
    """
    from modelport.serve.server import require_serve_extra

    require_serve_extra()
    from modelport.repository import Repository
    from modelport.serve import (
        InferenceService,
        bind_socket,
        create_app,
        load_config,
        run_server,
    )

    config = load_config(
        config_path, auth_token=auth_token or None, max_body_bytes=max_body_bytes
    ).with_options(
        providers=providers,
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
        optimization_level=optimization_level,
        batching=batching,
        max_batch_size=max_batch_size,
        max_queue_delay_ms=max_queue_delay_ms,
        max_queue_size=max_queue_size,
        inline_max_ms=inline_max_ms,
    )
    if config.defaults.providers:  # a typo in a provider fails now, not at the first load
        from modelport.runtime import resolve_providers

        resolve_providers(config.defaults.providers)
    repo = Repository(repo_dir, create=False)  # serving a mistyped path is an error
    service = InferenceService(repo, list(refs) or None, config)
    service.check_refs()  # an unknown REF is a one-line error before any port is bound
    sock = bind_socket(host, port)
    bound = sock.getsockname()[1]
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s: %(message)s")
    shown = f"[{host}]" if ":" in host else host
    what = ", ".join(refs) if refs else f"all models of {repo.root}"
    click.echo(f"modelport serving {what} at http://{shown}:{bound} (V2 at /v2, docs at /docs)",
               err=True)
    app = create_app(service)
    run_server(app, sock, log_level=log_level, access_log=access_log,
               graceful_timeout_s=graceful_timeout)


COMMANDS = [serve]
