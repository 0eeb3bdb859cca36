"""Validation of model names, aliases and tags, and parsing of references.

Names end up as directory names inside the repository, so they are held to a strict pattern:
no path separators, no ``..``, no NUL or control characters, nothing empty. A reference names
one version of a model: ``name`` (the latest), ``name:3`` (version 3) or ``name@alias``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelport.errors import UsageError

__all__ = [
    "Ref",
    "parse_ref",
    "validate_alias",
    "validate_name",
    "validate_tag",
    "validate_version",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Aliases start with a letter so that ``x@3`` can never be mistaken for version 3.
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]{1,9}")
MAX_TAG_VALUE = 1000


def _check(value: object, pattern: re.Pattern[str], kind: str, rule: str) -> str:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{kind} must be a non-empty string; {rule}")
    if pattern.fullmatch(value) is None or ".." in value:
        raise UsageError(f"invalid {kind} {value!r}; {rule}")
    return value


def validate_name(name: object) -> str:
    """A model name: letters, digits, ``.``, ``_``, ``-``; starts with a letter or digit."""
    return _check(
        name,
        _NAME,
        "model name",
        "use letters, digits, '.', '_' and '-' (starting with a letter or digit, at most 128 "
        "characters, no '..')",
    )


def validate_alias(alias: object) -> str:
    """An alias such as ``production``: starts with a letter, then letters, digits, ``._-``."""
    return _check(
        alias,
        _ALIAS,
        "alias",
        "use a letter followed by letters, digits, '.', '_' and '-' (at most 64 characters)",
    )


def validate_tag(key: object, value: object = "") -> tuple[str, str]:
    """A tag key follows the model-name rule; a value is free text without control characters."""
    key = _check(
        key,
        _NAME,
        "tag key",
        "use letters, digits, '.', '_' and '-' (starting with a letter or digit, no '..')",
    )
    if not isinstance(value, str):
        raise UsageError(f"tag {key!r} needs a string value, got {type(value).__name__}")
    if _CONTROL.search(value):
        raise UsageError(f"tag {key!r} has control characters in its value; remove them")
    if len(value) > MAX_TAG_VALUE:
        raise UsageError(f"tag {key!r} value is longer than {MAX_TAG_VALUE} characters")
    return key, value


def validate_version(version: object) -> int:
    """Version numbers are positive integers (``"3"`` is accepted from the command line)."""
    if isinstance(version, bool):
        raise UsageError(f"invalid version {version!r}; versions are positive integers")
    if isinstance(version, str) and _DIGITS.fullmatch(version):
        version = int(version)
    if not isinstance(version, int) or version < 1:
        raise UsageError(f"invalid version {version!r}; versions are positive integers")
    return version


@dataclass(frozen=True)
class Ref:
    """A parsed reference: at most one of ``version`` and ``alias`` is set; neither: latest."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_ref(ref: str | Ref) -> Ref:
    """Parse ``name``, ``name:3`` or ``name@alias``; anything else is a UsageError."""
    if isinstance(ref, Ref):
        return ref
    if not isinstance(ref, str) or not ref.strip():
        raise UsageError("empty model reference; use name, name:VERSION or name@ALIAS")
    text = ref.strip()
    if "@" in text:
        name, _, alias = text.partition("@")
        return Ref(validate_name(name), alias=validate_alias(alias))
    if ":" in text:
        name, _, version = text.partition(":")
        if not _DIGITS.fullmatch(version):
            raise UsageError(
                f"invalid reference {text!r}; the part after ':' must be a version number"
            )
        return Ref(validate_name(name), version=validate_version(version))
    return Ref(validate_name(text))
