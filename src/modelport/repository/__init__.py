"""The model repository: named models, numbered immutable versions, aliases, tags.

>>> repo = Repository("models")                       # doctest: +SKIP
>>> v = repo.register("net.onnx", "net", tags={"team": "vision"})
>>> repo.set_alias("net", "production", v.version)
>>> repo.load("net@production").model_path           # checksums verified

References name a version: ``name`` (the latest), ``name:3`` or ``name@alias``.
"""

from modelport.repository.manifest import Manifest
from modelport.repository.names import Ref, parse_ref
from modelport.repository.repo import ModelInfo, ModelVersion, Repository, default_root

__all__ = [
    "Manifest",
    "ModelInfo",
    "ModelVersion",
    "Ref",
    "Repository",
    "default_root",
    "parse_ref",
]
