"""``manifest.json``: the bundle's contract, as a dataclass and its JSON form.

It records what a scorer needs to check its input (the input schema), what every format returns
(task, classes, output columns), what each format could not take and why, the versions that made
the files, and the sha256 of every file, so a tampered or truncated file is caught on load.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from formats.diff import Tolerance  # the manifest's ``tolerance``: parity's rule, formats.diff
from formats.errors import ModelLoadError
from formats.schema import ColumnSpec, output_columns

__all__ = ["FORMATS", "FormatEntry", "Manifest", "Tolerance"]

MANIFEST_VERSION = 1

# format name -> its file in the bundle
FORMATS: dict[str, str] = {
    "pickle": "model.pkl",
    "skops": "model.skops",
    "pmml": "model.pmml",
    "onnx": "model.onnx",
}


@dataclass
class FormatEntry:
    """What happened to one format: ``saved`` (with its file) or ``failed`` (with the step and
    the reason), plus format-specific facts (ONNX precision and opset, skops trusted types)."""

    status: str
    file: str | None = None
    step: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def saved(self) -> bool:
        return self.status == "saved"

    def why_not(self) -> str:
        where = f" at step {self.step!r}" if self.step else ""
        return f"not saved{where}: {self.reason}"


@dataclass
class Manifest:
    name: str
    version: str
    task: str  # "classification" or "regression"
    classes: list[Any] | None
    inputs: list[ColumnSpec]
    model_type: str
    formats: dict[str, FormatEntry]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> sha256, bytes
    versions: dict[str, str] = field(default_factory=dict)
    tolerance: Tolerance = field(default_factory=Tolerance)
    has_proba: bool = True
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    created: str = ""
    manifest_version: int = MANIFEST_VERSION

    @property
    def outputs(self) -> list[str]:
        return output_columns(self.task, self.classes, self.has_proba)

    @property
    def sha256(self) -> str:
        """The ONNX model's sha256 (what Spark executors cache sessions by), else the pickle's."""
        for name in ("model.onnx", "model.pkl"):
            if name in self.files:
                return str(self.files[name]["sha256"])
        return ""

    def saved_formats(self) -> list[str]:
        return [f for f, e in self.formats.items() if e.saved]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["inputs"] = [c.to_dict() for c in self.inputs]
        data["tolerance"] = self.tolerance.to_dict()
        data["outputs"] = self.outputs
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        try:
            if int(data.get("manifest_version", 0)) > MANIFEST_VERSION:
                raise ModelLoadError(
                    f"the bundle's manifest is version {data['manifest_version']}, newer than "
                    f"this modelport reads ({MANIFEST_VERSION}); upgrade modelport"
                )
            return cls(
                name=str(data["name"]),
                version=str(data["version"]),
                task=str(data["task"]),
                classes=data.get("classes"),
                inputs=[ColumnSpec.from_dict(c) for c in data["inputs"]],
                model_type=str(data.get("model_type", "")),
                formats={k: FormatEntry(**v) for k, v in data["formats"].items()},
                files=dict(data.get("files", {})),
                versions=dict(data.get("versions", {})),
                tolerance=Tolerance(**data.get("tolerance", {})),
                has_proba=bool(data.get("has_proba", True)),
                description=str(data.get("description", "")),
                tags=dict(data.get("tags", {})),
                created=str(data.get("created", "")),
                manifest_version=int(data.get("manifest_version", MANIFEST_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(
                f"manifest.json is not a modelport manifest ({type(exc).__name__}: {exc}); "
                "re-create the bundle with 'python -m formats save'"
            ) from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelLoadError(
                f"manifest.json is not valid JSON ({exc}); the bundle is damaged: re-create it"
            ) from exc
        if not isinstance(data, dict):
            raise ModelLoadError("manifest.json is not a JSON object; re-create the bundle")
        return cls.from_dict(data)
