"""What the repository hands back: one version (:class:`ModelVersion`), one model's summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelport.repository import package as pkg
from modelport.repository.manifest import Manifest
from modelport.signature import Signature

__all__ = ["ModelInfo", "ModelVersion"]


@dataclass
class ModelVersion:
    """One registered version. ``tags``, ``aliases`` and ``description`` are the current ones
    from the index; the manifest keeps what was given at registration."""

    name: str
    version: int
    path: Path  # the immutable package directory
    manifest: Manifest
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    created: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def model_path(self) -> Path:
        return self.path / pkg.MODEL_FILE

    @property
    def signature(self) -> Signature:
        return self.manifest.signature

    @property
    def framework(self) -> str:
        return self.manifest.framework

    def input_example(self) -> dict[str, np.ndarray] | None:
        """The stored input example (a few rows), loaded without pickle; None if there is none."""
        if not self.manifest.input_example:
            return None
        return pkg.read_example(self.path / self.manifest.input_example, self.signature)


@dataclass
class ModelInfo:
    name: str
    description: str | None
    latest_version: int | None  # None once every version was deleted
    versions: int
    aliases: dict[str, int]
    tags: dict[str, str]
    created: str
