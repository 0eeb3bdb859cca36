"""The peers of the end-to-end benchmark, as a user writes them: a whole spark-submit script.

    spark-submit --properties-file conf/spark/local.conf jobs/benchmark/scripts/udf.py \\
        --peer tuned|guide|pickle --bundle B --input DATA --output OUT

- ``tuned``: the model.onnx bytes broadcast, ``mapInPandas``, one ONNX Runtime session per
  partition with one intra-op thread (what a good engineer writes);
- ``guide``: the same with ONNX Runtime's default thread pool (what the guides show);
- ``pickle``: the pickle broadcast, ``predict_proba`` per batch in ``mapInPandas``.

It reads the bundle's files directly, as a user's script would, and prints one JSON line: the
seconds of its write (the scoring action) and of the whole script.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

STARTED = time.perf_counter()


def onnx_batches(model: Any, columns: list[str], classes: list[str], threads: int) -> Any:
    """mapInPandas's function: model.onnx's broadcast bytes, one ORT session per partition
    (``threads`` intra-op threads; 0: ORT's default pool)."""
    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(model.value, options, providers=["CPUExecutionProvider"])
        types = {i.name: i.type for i in session.get_inputs()}
        for frame in frames:
            feed = {}
            for c in columns:
                if types[c] == "tensor(string)":
                    feed[c] = frame[c].fillna("").astype(str).to_numpy().reshape(-1, 1)
                elif types[c] == "tensor(int64)":
                    feed[c] = frame[c].to_numpy().astype(np.int64).reshape(-1, 1)
                else:
                    feed[c] = frame[c].to_numpy().astype(np.float32).reshape(-1, 1)
            label, proba = session.run(None, feed)[:2]
            out = pd.DataFrame({"row_id": frame["row_id"], "label": label})
            for j, c in enumerate(classes):
                out[f"proba_{c}"] = proba[:, j].astype(np.float64)
            yield out

    return run


def pickle_batches(model: Any, columns: list[str], classes: list[str]) -> Any:
    """mapInPandas's function: the broadcast pickle's ``predict_proba`` per batch."""
    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        fitted = pickle.loads(model.value)
        for frame in frames:
            proba = fitted.predict_proba(frame[columns])
            out = pd.DataFrame({"row_id": frame["row_id"]})
            out["label"] = np.asarray(fitted.classes_)[proba.argmax(axis=1)].astype(str)
            for j, c in enumerate(classes):
                out[f"proba_{c}"] = proba[:, j]
            yield out

    return run


def main() -> None:
    from pyspark.sql import SparkSession

    p = argparse.ArgumentParser()
    p.add_argument("--peer", choices=("tuned", "guide", "pickle"), required=True)
    p.add_argument("--bundle", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    args = p.parse_args()
    manifest = json.loads((Path(args.bundle) / "manifest.json").read_text())
    columns = [c["name"] for c in manifest["inputs"]]
    classes = [str(c) for c in manifest["classes"]]
    spark = SparkSession.builder.getOrCreate()
    name = "model.pkl" if args.peer == "pickle" else "model.onnx"
    model = spark.sparkContext.broadcast((Path(args.bundle) / name).read_bytes())
    if args.peer == "pickle":
        run = pickle_batches(model, columns, classes)
    else:
        run = onnx_batches(model, columns, classes, threads=1 if args.peer == "tuned" else 0)
    schema = "row_id long, label string, " + ", ".join(f"proba_{c} double" for c in classes)
    start = time.perf_counter()
    df = spark.read.parquet(args.input).select("row_id", *columns)
    df.mapInPandas(run, schema).write.mode("overwrite").parquet(args.output)
    end = time.perf_counter()
    print(json.dumps({"write_s": round(end - start, 3), "script_s": round(end - STARTED, 3)}))
    spark.stop()


if __name__ == "__main__":
    main()
