"""Train the default pipeline on the penguins and save it as a bundle in every format.

    python -m jobs.export --output bundles/penguins [--model rf|logreg|hgb|xgboost|lightgbm]

The pipeline is what a team would ship: a ColumnTransformer that imputes the numeric columns
(median) and the categories (a constant), one-hot encodes the categories (an unseen one scores
as all zeros), then the model. ``rf`` (the default) is a RandomForest of 50 trees of depth 10;
``logreg`` is the light model of the benchmarks. Training uses 75 % of the 344 birds (a fixed,
stratified split); the other 25 % are the held-out rows of ``make parity``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd

from jobs._cli import Parser, guarded
from jobs.datagen import CATEGORICAL, NUMERIC, TARGET, load_penguins

__all__ = ["MODELS", "default_pipeline", "main", "split"]

MODELS = ("rf", "logreg", "hgb", "xgboost", "lightgbm")
SEED = 0


def default_pipeline(model: str = "rf") -> Any:
    """The unfitted pipeline: preprocessing + the named model."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric: list[Any] = [SimpleImputer(strategy="median")]
    if model == "logreg":
        numeric.append(StandardScaler())
    categorical = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(handle_unknown="ignore"),
    )
    features = [*NUMERIC, "year"]
    preprocess = ColumnTransformer(
        [("num", make_pipeline(*numeric), features), ("cat", categorical, CATEGORICAL)]
    )
    return Pipeline([("preprocess", preprocess), ("model", _estimator(model))])


def _estimator(model: str) -> Any:
    if model == "rf":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=50, max_depth=10, random_state=SEED, n_jobs=1)
    if model == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=1000)
    if model == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=50, random_state=SEED)
    if model == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(n_estimators=50, max_depth=4, random_state=SEED, n_jobs=1)
    if model == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(n_estimators=50, random_state=SEED, n_jobs=1, verbose=-1)
    raise ValueError(f"unknown model {model!r}; use one of {', '.join(MODELS)}")


def split() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """(train X, held-out X, train y, held-out y) of the penguins, always the same rows."""
    from sklearn.model_selection import train_test_split

    frame = load_penguins()
    x, y = frame.drop(columns=TARGET), frame[TARGET]
    parts: tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series] = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=SEED
    )
    return parts


def train(model: str = "rf") -> tuple[Any, pd.DataFrame]:
    """The fitted default pipeline and the training features it was fitted on."""
    x_train, _x_test, y_train, _y_test = split()
    pipeline = default_pipeline(model)
    if model in ("xgboost", "lightgbm"):  # they want integer classes
        from sklearn.preprocessing import LabelEncoder

        y_train = pd.Series(LabelEncoder().fit_transform(y_train), index=y_train.index)
    return pipeline.fit(x_train, y_train), x_train


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(_main, argv)


def _main(argv: list[str]) -> int:
    parser = Parser(prog="python -m jobs.export", description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="bundles/penguins", help="bundle directory to write")
    parser.add_argument("--model", choices=MODELS, default="rf")
    parser.add_argument(
        "--formats", default="pickle,skops,pmml,onnx", help="comma-separated formats to save"
    )
    args = parser.parse_args(argv)
    from formats import save
    from formats.render import print_saved

    pipeline, x_train = train(args.model)
    bundle = save(
        pipeline,
        args.output,
        sample=x_train,
        formats=[f.strip() for f in args.formats.split(",") if f.strip()],
        name=f"penguins-{args.model}",
        description=f"Palmer penguins species, {args.model} pipeline",
        overwrite=True,
    )
    print_saved(bundle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
