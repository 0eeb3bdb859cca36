"""The benchmark's tree-form measurement: ONNX Runtime's tree kernels against the matmul form
(:mod:`formats.onnx.trees_matmul`) as the trees grow, on one thread.

Forests of 50 trees with a fixed number of splits each (``max_leaf_nodes``), a 3-class
classifier and a regressor, on 11 float features (the default pipeline's width after
encoding), scored in 10k-row batches. Where the two cross is what
:data:`formats.onnx.trees_matmul.MAX_MEAN_SPLITS` (``trees="auto"``) stands on.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

__all__ = ["SPLITS", "tree_forms"]

SPLITS = (7, 11, 15, 19, 23, 31)
TREES, FEATURES, ROWS, BATCH = 50, 11, 20_000, 10_000
ONE_ROW_CALLS = 300


def _timings(model: Any, x: Any) -> tuple[float, float]:
    """(ns per row in 10k-row batches, us for a call with one row)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    name, out = session.get_inputs()[0].name, session.get_outputs()[-1].name
    batches = [x[i : i + BATCH] for i in range(0, len(x), BATCH)]
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for b in batches:
            session.run([out], {name: b})
        runs.append(time.perf_counter() - start)
    calls = []
    for i in range(ONE_ROW_CALLS):
        start = time.perf_counter()
        session.run([out], {name: x[i : i + 1]})
        calls.append(time.perf_counter() - start)
    return statistics.median(runs) / len(x) * 1e9, statistics.median(calls) * 1e6


def tree_forms(splits: tuple[int, ...] = SPLITS) -> list[dict[str, Any]]:
    """Per kind and size: ns per row in batches for the tree ensemble and the matmul form, their
    ratio, and each one's latency for a single row (where the matmul form's ~7 ops per tree
    cost more than the walk)."""
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from formats.onnx.trees_matmul import rewrite

    x, y = make_classification(2 * ROWS, FEATURES, n_informative=8, n_classes=3, random_state=0)
    x = x.astype(np.float32)
    fit, scored = slice(ROWS, None), x[:ROWS]
    rows = []
    for kind, cls, options in (
        ("classifier", RandomForestClassifier, {"zipmap": False}),
        ("regressor", RandomForestRegressor, None),
    ):
        for n in splits:
            est = cls(TREES, max_leaf_nodes=n + 1, random_state=0, n_jobs=1).fit(x[fit], y[fit])
            model = to_onnx(est, x[:5], options=options, target_opset={"": 17, "ai.onnx.ml": 3})
            matmul, done = rewrite(model, "matmul")
            (ensemble_ns, ensemble_us), (matmul_ns, matmul_us) = (
                _timings(model, scored), _timings(matmul, scored))  # fmt: skip
            rows.append({
                "kind": kind, "splits": n, "rewritten": bool(done),
                "ensemble_ns_per_row": round(ensemble_ns), "matmul_ns_per_row": round(matmul_ns),
                "speedup": round(ensemble_ns / matmul_ns, 2),
                "ensemble_one_row_us": round(ensemble_us), "matmul_one_row_us": round(matmul_us),
            })  # fmt: skip
    return rows


if __name__ == "__main__":  # python -m jobs.benchmark.trees
    for row in tree_forms():
        print(row)
