"""Portability, each cell measured: the pickle in an older scikit-learn, the PMML on two
independent JVM engines, the ONNX model in Node.js. Every cell compares outputs with the
original's (or, for PMML, the two engines with each other) on the same rows.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from formats.bundle import Bundle
from formats.compare import _envs, _scripts
from formats.compare.results import Cell
from formats.diff import FrameDiff, compare_frames
from formats.errors import MissingDependencyError, ModelportError
from formats.load import load
from formats.schema import conform

__all__ = ["node_onnx", "node_onnx_cell", "old_sklearn_cell", "pmml_engines_cell"]


def _verdict(diff: FrameDiff) -> tuple[str, str]:
    """("ok" or "differs" by parity's rule, the agreement in words)."""
    share = diff.label_agreement
    labels = "" if share is None else f"labels {share:.2%} equal, "
    return ("ok" if diff.passed else "differs"), f"{labels}max |diff| {diff.max_abs:.2g}"


def _not_saved(bundle: Bundle, fmt: str) -> str | None:
    entry = bundle.manifest.formats.get(fmt)
    if entry is None:
        return "not saved: not in the bundle"
    return None if entry.saved else entry.why_not()


def old_sklearn_cell(
    bundle: Bundle, frame: pd.DataFrame, expected: pd.DataFrame, version: str, cache: Path
) -> Cell:
    check = f"pickle in scikit-learn {version}"
    why = _not_saved(bundle, "pickle")
    if why:
        return Cell(check, "pickle", "skipped", why)
    python = _envs.old_sklearn_python(version, cache)
    if isinstance(python, str):
        return Cell(check, "pickle", "missing", python)
    m = bundle.manifest
    with tempfile.TemporaryDirectory(prefix="modelport-oldsk-") as tmp:
        rows, out = Path(tmp) / "rows.parquet", Path(tmp) / "out.json"
        conform(frame, m.inputs).to_parquet(rows, index=False)
        pkl = bundle.checked_path("pickle")
        command = [str(python), "-c", _scripts.OLD_SKLEARN, str(pkl), str(rows), str(out)]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if not out.exists():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
            return Cell(check, "pickle", "error", f"the scoring process failed: {tail}")
        answer: dict[str, Any] = json.loads(out.read_text())
    details = {k: answer.get(k) for k in ("sklearn", "numpy", "warnings", "error", "stage")}
    details["against"] = "original"
    warned = answer.get("warnings") or {}
    if answer.get("error"):
        where = "unpickling" if answer.get("stage") == "unpickle" else "predicting"
        return Cell(check, "pickle", "error", f"{where} fails: {answer['error']}", details=details)
    got = _old_frame(answer, m.task, m.classes, expected)
    diff = compare_frames(expected, got, m.tolerance)
    status, text = _verdict(diff)
    if status == "ok" and warned:
        status = "warning"
    noted = _warnings(warned)
    summary = f"{'predicts the same' if status != 'differs' else 'predicts differently'}: {text}"
    summary += f"; warns: {noted}" if noted else "; no warnings"
    return Cell(check, "pickle", status, summary, len(frame), diff.label_agreement, diff.max_abs,
                details)  # fmt: skip


def _warnings(counted: dict[str, int]) -> str:
    """{"InconsistentVersionWarning (Pipeline)": 5, ...} as "64× InconsistentVersionWarning
    (DecisionTreeClassifier 51, Pipeline 5, ...)"."""
    by: dict[str, dict[str, int]] = {}
    for key, n in counted.items():
        category, _, what = key.partition(" (")
        by.setdefault(category, {})[what.rstrip(")") or "-"] = n
    parts = []
    for category, whats in by.items():
        top = sorted(whats.items(), key=lambda kv: -kv[1])
        named = ", ".join(f"{w} {n}" for w, n in top if w != "-")
        parts.append(f"{sum(whats.values())}× {category}" + (f" ({named})" if named else ""))
    return "; ".join(parts)


def _old_frame(
    answer: dict[str, Any], task: str, classes: list[Any] | None, like: pd.DataFrame
) -> pd.DataFrame:
    if task != "classification":
        return pd.DataFrame({"prediction": answer["prediction"]})
    got = pd.DataFrame({"label": answer["label"]})
    if answer.get("proba") is not None:
        proba = np.asarray(answer["proba"], dtype=np.float64)
        order = [str(c) for c in answer["classes"]]
        for column in like.columns:
            if column.startswith("proba_"):
                got[column] = proba[:, order.index(column.removeprefix("proba_"))]
    return got


def pmml_engines_cell(bundle: Bundle, frame: pd.DataFrame) -> Cell:
    """PMML4S (pypmml) against JPMML-Evaluator: two independent implementations of the spec."""
    check = "PMML: PMML4S (pypmml) vs JPMML-Evaluator"
    why = _not_saved(bundle, "pmml")
    if why:
        return Cell(check, "pmml", "skipped", why)
    outputs = []
    for engine in ("pypmml", "jpmml"):
        try:
            scorer = load(bundle, "pmml", engine)
        except MissingDependencyError as exc:
            return Cell(check, "pmml", "missing", str(exc))
        except ModelportError as exc:
            return Cell(check, "pmml", "error", f"{engine}: {exc}")
        try:
            outputs.append(scorer.predict(frame))
        except ModelportError as exc:
            return Cell(check, "pmml", "error", f"{engine}: {exc}")
        finally:
            scorer.close()  # type: ignore[attr-defined]
    diff = compare_frames(outputs[0], outputs[1], bundle.manifest.tolerance)
    status, text = _verdict(diff)
    word = "agree" if status == "ok" else "disagree"
    summary = f"the engines {word} with each other: {text}"
    if status != "ok":
        from formats.pmml_engines import faithful_engine, pypmml_cause

        cause = pypmml_cause(bundle)
        summary += f"; {cause}" if cause else ""
        default = faithful_engine(bundle.manifest.formats["pmml"].details)
        summary += f"; formats.load uses {default} (it agreed with the original at save)"
    details = {"against": "each other"}
    return Cell(check, "pmml", status, summary, len(frame), diff.label_agreement, diff.max_abs,
                details)  # fmt: skip


def node_onnx(bundle: Bundle, frame: pd.DataFrame, cache: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``frame`` scored by onnxruntime-node in Node.js, as canonical columns, and what ran it.

    The tensors are built by the same ``OnnxScorer.feed`` the Python scorer uses, and the
    outputs decoded by its ``canonical``: only the runtime differs. Raises
    MissingDependencyError when Node.js or the npm package cannot be had.
    """
    from formats.onnx.scorer import OnnxScorer

    found = _envs.node_runtime(cache)
    if isinstance(found, str):
        raise MissingDependencyError(found)
    node, place = found
    m = bundle.manifest
    scorer = OnnxScorer(bundle.read(bundle.file_of("onnx")), m.task, m.classes, m.inputs)
    x = conform(frame, m.inputs)
    feed = scorer.feed({c: x[c].to_numpy() for c in x.columns})
    script = place / "score.cjs"
    script.write_text(_scripts.NODE_SCORE)
    with tempfile.TemporaryDirectory(prefix="modelport-node-") as tmp:
        inputs, out = Path(tmp) / "in.json", Path(tmp) / "out.json"
        inputs.write_text(json.dumps({k: _tensor(v) for k, v in feed.items()}))
        # absolute: node runs in its own cwd, where a relative bundle path names nothing
        model = bundle.checked_path("onnx").resolve()
        proc = subprocess.run(
            [node, str(script), str(model), str(inputs), str(out)],
            capture_output=True, text=True, timeout=600, cwd=place,
        )  # fmt: skip
        if proc.returncode != 0 or not out.exists():
            # Node ends a crash with its version line; the error is the line that says Error.
            lines = proc.stderr.strip().splitlines() or ["no output"]
            tail = next((x for x in lines if "Error" in x), lines[-1]).strip()[:300]
            raise ModelportError(f"node exited {proc.returncode}: {tail}")
        answer = json.loads(out.read_text())
    outputs = {n: _array(t) for n, t in answer["outputs"].items()}
    info = {"node": answer["node"], "onnxruntime_node": answer["ort"], "against": "original"}
    return scorer.canonical(outputs, frame.index), info


def _tensor(values: np.ndarray) -> dict[str, Any]:
    kind = {"f": f"float{values.dtype.itemsize * 8}", "i": "int64", "b": "bool"}.get(
        values.dtype.kind, "string"
    )
    flat = values.reshape(-1)
    data = [str(v) for v in flat] if kind == "string" else flat.tolist()
    if kind.startswith("float"):  # JSON has no NaN: null, which the script reads back as NaN
        data = [None if v != v else v for v in data]
    return {"type": kind, "dims": list(values.shape), "data": data}


def _array(tensor: dict[str, Any]) -> np.ndarray:
    dtype = {"string": object, "int64": np.int64, "bool": np.bool_}.get(tensor["type"], np.float64)
    return np.asarray(tensor["data"], dtype=dtype).reshape(tensor["dims"])


def node_onnx_cell(bundle: Bundle, frame: pd.DataFrame, expected: pd.DataFrame, cache: Path) -> Cell:
    check = "ONNX in Node.js (onnxruntime-node)"
    why = _not_saved(bundle, "onnx")
    if why:
        return Cell(check, "onnx", "skipped", why)
    try:
        got, info = node_onnx(bundle, frame, cache)
    except MissingDependencyError as exc:
        return Cell(check, "onnx", "missing", str(exc), details={"against": "original"})
    except ModelportError as exc:
        return Cell(check, "onnx", "error", str(exc), details={"against": "original"})
    diff = compare_frames(expected, got, bundle.manifest.tolerance)
    status, text = _verdict(diff)
    summary = f"Node.js {info['node']}, onnxruntime-node {info['onnxruntime_node']}: {text}"
    return Cell(check, "onnx", status, summary, len(frame), diff.label_agreement, diff.max_abs,
                info)  # fmt: skip
