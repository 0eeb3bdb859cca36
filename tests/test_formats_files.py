"""formats._files.local_path: the one rule for whether a location is a local path."""

from __future__ import annotations

from pathlib import Path

import pytest

from formats._files import local_path, pyarrow_filesystem


@pytest.mark.parametrize(
    ("location", "path"),
    [
        ("bundles/penguins", Path("bundles/penguins")),
        ("/tmp/out", Path("/tmp/out")),
        ("file:///tmp/out", Path("/tmp/out")),
        ("file:/tmp/out", Path("/tmp/out")),  # as Hadoop writes a local path
        (Path("relative"), Path("relative")),
        ("s3a://bucket/out", None),
        ("hdfs://namenode:8020/out", None),
        ("gs://bucket/out", None),
    ],
)
def test_local_path(location: str | Path, path: Path | None) -> None:
    assert local_path(location) == path


def test_a_local_location_has_no_pyarrow_filesystem() -> None:
    assert pyarrow_filesystem("file:///tmp/out") == (None, "/tmp/out")
