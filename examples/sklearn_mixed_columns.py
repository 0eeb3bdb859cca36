"""A scikit-learn pipeline with preprocessing on mixed-type columns, served as named inputs.

The ONNX model takes the raw columns (one named input per column) and returns plain tensors
(label, probabilities): no ZipMap dictionaries, nothing to re-implement at serving time.

Run: .venv/bin/python examples/sklearn_mixed_columns.py
"""

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import modelport

wine = load_wine(as_frame=True)
frame = wine.frame.drop(columns="target")[["alcohol", "malic_acid", "color_intensity"]].copy()
# A categorical column, as real tables have: the alcohol level as a string band.
frame["strength"] = pd.cut(frame["alcohol"], [0, 12.5, 13.5, 99], labels=["low", "mid", "high"]).astype(str)
target = wine.target

pipeline = Pipeline([
    ("columns", ColumnTransformer([
        ("numeric", StandardScaler(), ["alcohol", "malic_acid", "color_intensity"]),
        ("category", OneHotEncoder(handle_unknown="ignore"), ["strength"]),
    ])),
    ("classifier", LogisticRegression(max_iter=1000)),
])
pipeline.fit(frame, target)

result = modelport.convert(pipeline, sample=frame.head(20))
print("inputs:", [f"{s.name}:{s.dtype}" for s in result.signature.inputs])
print("outputs:", [f"{s.name}:{s.dtype}" for s in result.signature.outputs])
assert result.report, "the ONNX model does not match the original"

session = modelport.Session(result.model)
feed = {name: np.asarray(value) for name, value in result.sample.items()}
print("labels from ONNX Runtime:", session.run(feed)["label"][:10])
print("labels from scikit-learn:", pipeline.predict(frame.head(20))[:10])
