"""Shared fixtures: one local[2] SparkSession and one penguins bundle for the whole run.

The session is built here, before any job's ``main`` runs, so the jobs reuse it (their session
builder takes an active session as it is). Workers run this interpreter (the venv), tasks fail
at once (maxFailures=1: a failing UDF is a failing test, not four retries), and the UI and the
progress bar are off to keep test output readable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g",
            "sex", "year"]  # fmt: skip


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("modelport-tests")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.task.maxFailures", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.python.worker.reuse", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def penguins(rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` penguins (resampled with replacement), with a unique int64 ``row_id`` first."""
    import palmerpenguins

    data = palmerpenguins.load_penguins().drop(columns="species")
    out = data.sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    out.insert(0, "row_id", np.arange(rows, dtype=np.int64))
    return out


@pytest.fixture(scope="session")
def penguins_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default pipeline (a random forest on the penguins) as a pickle + ONNX bundle."""
    import palmerpenguins
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    import formats

    df = palmerpenguins.load_penguins()
    x, y = df[FEATURES], df["species"]
    numeric = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
    strings = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(handle_unknown="ignore"),
    )
    pre = ColumnTransformer(
        [("num", SimpleImputer(strategy="median"), numeric), ("cat", strings, ["island", "sex"])]
    )
    model = Pipeline(
        [("pre", pre), ("model", RandomForestClassifier(30, max_depth=8, random_state=0))]
    )
    model.fit(x, y)
    path = tmp_path_factory.mktemp("bundles") / "penguins"
    formats.save(model, path, sample=x, formats=("pickle", "onnx"))
    return path


@pytest.fixture(scope="session")
def penguins_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6000 penguin rows in 3 Parquet files."""
    root = tmp_path_factory.mktemp("data") / "penguins"
    root.mkdir()
    data = penguins(6000, seed=1)
    for i, part in enumerate(np.array_split(np.arange(len(data)), 3)):
        data.iloc[part].to_parquet(root / f"part-{i}.parquet", index=False)
    return root


@pytest.fixture(scope="session")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A tiny torch CNN on [N, 1, 8, 8] with two outputs (logits [N, 10], top probability [N]),
    and its model.onnx as a bundle (bundle_from_onnx)."""
    import torch
    from torch import nn

    from formats.onnx import convert
    from jobs.scoring.tensor import bundle_from_onnx

    class CNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.head = nn.Linear(4 * 4 * 4, 10)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.head(torch.max_pool2d(torch.relu(self.conv(x)), 2).flatten(1))
            return logits, torch.softmax(logits, 1).amax(1)

    torch.manual_seed(0)
    net = CNN().eval()
    root = tmp_path_factory.mktemp("cnn")
    sample = np.random.default_rng(0).normal(size=(4, 1, 8, 8)).astype(np.float32)
    convert(net, sample=sample, exporter="torchscript", output=root / "cnn.onnx")
    return net, bundle_from_onnx(root / "cnn.onnx", root / "bundle").local_path or root
