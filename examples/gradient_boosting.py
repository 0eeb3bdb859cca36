"""A gradient-boosted model (XGBoost and LightGBM) on breast-cancer data, converted and verified.

Run: .venv/bin/python examples/gradient_boosting.py
"""

import lightgbm
import xgboost
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import modelport

features, labels = load_breast_cancer(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(features, labels, random_state=0)

for model in (
    xgboost.XGBClassifier(n_estimators=50, max_depth=4),
    lightgbm.LGBMClassifier(n_estimators=50, num_leaves=15, verbose=-1),
):
    model.fit(x_train, y_train)
    result = modelport.convert(model, sample=x_test[:32])
    session = modelport.Session(result.model)
    onnx_labels = session.run({result.signature.input_names[0]: x_test.astype("float32")})["label"]
    agreement = (onnx_labels == model.predict(x_test)).mean()
    print(f"{type(model).__name__}: verification {'passed' if result.report else 'FAILED'}, "
          f"label agreement with the original on {len(x_test)} rows: {agreement:.3f}")
    assert result.report
