"""A Lightning CNN on digits: train, convert to ONNX with a dynamic batch, verify, register, load.

Run: .venv/bin/python examples/lightning_cnn.py [REPO_DIR]
"""

import sys
import tempfile

import numpy as np
from sklearn.datasets import load_digits

import modelport
from modelport.demo.models import train_cnn

digits = load_digits()
images = (digits.images / 16.0).astype(np.float32)[:, None]  # N x 1 x 8 x 8
model = train_cnn(images[:1200], digits.target[:1200], epochs=3, progress=False)

# The LightningModule's example_input_array is the sample; the batch axis stays dynamic.
result = modelport.convert(model)
print(result.report.render() if hasattr(result.report, "render") else result.report)
assert result.report, "the ONNX model does not match the original"

repo = modelport.Repository(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
version = repo.register(result, "digits-cnn", description="Lightning CNN on 8x8 digits")
repo.set_alias("digits-cnn", "production", version.version)

session = modelport.Session(repo.load("digits-cnn@production").model_path)
logits = session.run({session.signature.input_names[0]: images[1200:]})
predicted = next(iter(logits.values())).argmax(1)
print(f"{version.ref}: ONNX accuracy on held-out digits {(predicted == digits.target[1200:]).mean():.3f}")
