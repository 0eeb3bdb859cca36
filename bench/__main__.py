"""``python -m bench NAME [ARGS]``: run one of modelport's reproducible benchmarks.

Each benchmark is a module of this folder with a ``main(argv) -> int``; results go to
``bench/RESULTS-*.md`` with the command that made them.
"""

from __future__ import annotations

import importlib
import sys

# name -> module (relative to this folder); add new benchmarks here.
BENCHMARKS = {
    "convert": "convert_bench",  # ONNX Runtime vs the original framework, per converter
    "serve": "serve_bench",  # modelport serve vs a naive FastAPI app vs the raw ORT loop
    "optimize": "optimize_bench",  # fp32 vs int8 (dynamic, static): latency and accuracy
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHMARKS:
        known = ", ".join(BENCHMARKS)
        print(f"usage: python -m bench NAME [ARGS]   (NAME: {known})", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    package = __spec__.parent if __spec__ and __spec__.parent else "bench"
    module = importlib.import_module(f"{package}.{BENCHMARKS[argv[0]]}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
