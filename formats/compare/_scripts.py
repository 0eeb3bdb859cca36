"""The programs the portability checks run outside this environment, as text.

They cannot import modelport (the older venv does not have it; Node.js is not Python), so each is
self-contained: it reads its inputs from files, writes JSON, and reports a failure as data.
"""

from __future__ import annotations

__all__ = ["NODE_SCORE", "OLD_SKLEARN"]

# argv: model.pkl rows.parquet out.json. Records every warning by (category, estimator), the
# stage that failed and its error, or the labels and probabilities.
OLD_SKLEARN = r"""
import collections, json, pickle, re, sys, warnings
import numpy as np, pandas as pd, sklearn
pkl, rows, out = sys.argv[1:4]
answer = {"sklearn": sklearn.__version__, "numpy": np.__version__}
seen = collections.Counter()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        answer["stage"] = "unpickle"
        with open(pkl, "rb") as fh:
            model = pickle.load(fh)
        answer["stage"] = "predict"
        x = pd.read_parquet(rows)
        for c in x.columns:  # scikit-learn's imputers look for np.nan, not None
            if not pd.api.types.is_numeric_dtype(x[c]):
                x[c] = x[c].astype(object).where(x[c].notna(), np.nan)
        answer["label"] = [v.item() if hasattr(v, "item") else v for v in model.predict(x)]
        if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
            answer["proba"] = model.predict_proba(x).tolist()
            answer["classes"] = [str(c) for c in model.classes_]
        else:
            answer["prediction"] = answer.pop("label")
        answer["stage"] = "done"
    except Exception as exc:
        answer["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
for w in caught:
    text = str(w.message)
    est = re.search(r"estimator (\w+)", text)
    seen[w.category.__name__ + (f" ({est.group(1)})" if est else "")] += 1
answer["warnings"] = dict(seen)
with open(out, "w") as fh:
    json.dump(answer, fh, default=str)
"""

# argv: model.onnx inputs.json out.json. inputs: {name: {type, dims, data}}; null floats are NaN.
NODE_SCORE = r"""
const fs = require("fs");
const ort = require("onnxruntime-node");
const [model, inputs, out] = process.argv.slice(2);
const typed = {
  float32: (d) => Float32Array.from(d, (v) => (v === null ? NaN : v)),
  float64: (d) => Float64Array.from(d, (v) => (v === null ? NaN : v)),
  int64: (d) => BigInt64Array.from(d, (v) => BigInt(v)),
  bool: (d) => Uint8Array.from(d, (v) => (v ? 1 : 0)),
  string: (d) => d,
};
(async () => {
  const feeds = {};
  for (const [name, t] of Object.entries(JSON.parse(fs.readFileSync(inputs, "utf8")))) {
    feeds[name] = new ort.Tensor(t.type, typed[t.type](t.data), t.dims);
  }
  const session = await ort.InferenceSession.create(model);
  const results = await session.run(feeds);
  const outputs = {};
  for (const [name, t] of Object.entries(results)) {
    const data = Array.from(t.data, (v) => (typeof v === "bigint" ? Number(v) : v));
    outputs[name] = { type: t.type, dims: t.dims.map(Number), data };
  }
  const ortVersion = require("onnxruntime-node/package.json").version;
  fs.writeFileSync(out, JSON.stringify({ node: process.version, ort: ortVersion, outputs }));
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""
