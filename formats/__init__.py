"""modelport's formats module: one fitted pipeline as pickle, skops, PMML and ONNX.

    import formats

    bundle = formats.save(pipeline, "bundles/penguins", sample=X_train)
    scorer = formats.load(bundle, "pmml", engine="jpmml")   # or "onnx", "pickle", "skops"
    scores = scorer.predict(df)                              # label + proba_<class>, or prediction
    report = formats.parity(bundle, held_out)                # every format vs the original

Importing ``formats`` loads numpy and pandas, nothing heavier: no Spark, no JVM, no torch, no
scikit-learn, no ONNX Runtime; each is imported when a function needs it.
"""

from __future__ import annotations

from formats.bundle import Bundle
from formats.diff import Tolerance
from formats.load import Scorer
from formats.manifest import Manifest
from formats.parity import ParityReport

# The functions share their names with the modules that define them; binding them last makes
# ``formats.save`` etc. the functions, while ``from formats.save import ...`` still reads the
# module from sys.modules.
from formats.load import load  # isort: skip
from formats.parity import parity  # isort: skip
from formats.save import save  # isort: skip

__all__ = ["Bundle", "Manifest", "ParityReport", "Scorer", "Tolerance", "load", "parity", "save"]
