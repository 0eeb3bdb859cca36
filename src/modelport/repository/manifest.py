"""The manifest of a version package: what the model is, where it came from, how it was proven.

``manifest.json`` is written once, when the version is registered, and never changed: tags and
descriptions set later live in the index, the manifest keeps the ones given at registration.
It lists the sha256 of every other file in the package; its own checksum is kept in the index.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelport.errors import IntegrityError
from modelport.signature import Signature

__all__ = ["MANIFEST_FILE", "Manifest"]

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class Manifest:
    name: str
    version: int
    created: str  # UTC, ISO 8601 with a trailing "Z"
    framework: str
    signature: Signature
    # library versions and exporter details, e.g. {"torch": "2.13.0", "exporter": "dynamo"}
    source: dict[str, Any] = field(default_factory=dict)
    verification: dict[str, Any] | None = None  # VerificationReport.to_dict(), None: not verified
    forced: bool = False  # registered although verification failed
    # {"opset": {"": 17, "ai.onnx.ml": 3}, "ir_version": 8, "onnxruntime": "1.20.1", ...}
    runtime: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # {relative path: sha256 hex}
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    input_example: str | None = None  # file name of the input example (.npz), if any
    # set on import: {"version": 3, "created": "...", "archive": "x-3.tar.gz"}
    imported_from: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "framework": self.framework,
            "source": dict(self.source),
            "signature": self.signature.to_dict(),
            "input_example": self.input_example,
            "verification": self.verification,
            "forced": self.forced,
            "runtime": dict(self.runtime),
            "files": dict(sorted(self.files.items())),
            "tags": dict(self.tags),
            "description": self.description,
            "imported_from": self.imported_from,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        return cls(
            name=str(data["name"]),
            version=int(data["version"]),
            created=str(data["created"]),
            framework=str(data["framework"]),
            signature=Signature.from_dict(data["signature"]),
            source=dict(data.get("source") or {}),
            verification=data.get("verification"),
            forced=bool(data.get("forced", False)),
            runtime=dict(data.get("runtime") or {}),
            files={str(k): str(v) for k, v in (data.get("files") or {}).items()},
            tags={str(k): str(v) for k, v in (data.get("tags") or {}).items()},
            description=data.get("description"),
            input_example=data.get("input_example"),
            imported_from=data.get("imported_from"),
            format_version=int(data.get("format_version", FORMAT_VERSION)),
        )

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, default=_jsonable) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        """Parse a manifest; ``where`` names it in the error (e.g. "model 'x:2'")."""
        try:
            parsed = json.loads(data)
            if not isinstance(parsed, dict):
                raise TypeError("not a JSON object")
            return cls.from_dict(parsed)
        except (ValueError, TypeError, KeyError) as exc:
            raise IntegrityError(
                f"{where} has an unreadable {MANIFEST_FILE} ({exc}); re-register or import it again"
            ) from exc

    @property
    def verified(self) -> bool | None:
        """True or False from the stored report, None when the version was never verified."""
        if self.verification is None:
            return None
        passed = self.verification.get("passed")
        return None if passed is None else bool(passed)


def _jsonable(value: Any) -> Any:
    """Reports may hold numpy scalars or arrays, tuples and paths; store them as plain JSON."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)
