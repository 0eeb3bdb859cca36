"""Export and import of versions, and archives that try to do harm."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from modelport.errors import NotFoundError, RepositoryError
from modelport.repository import Repository
from modelport.runtime.session import Session
from tests.onnx_models import doubler, mlp

X = np.arange(12, dtype=np.float32).reshape(4, 3)


@pytest.fixture
def source(tmp_path: Path) -> Repository:
    with Repository(tmp_path / "source") as repo:
        repo.register(doubler(), "double", sample={"x": X})
        repo.register(doubler(), "double", sample={"x": X * 3}, tags={"stage": "prod"},
                      description="the second")
        repo.set_tag("double", "owner", "ml")
        repo.set_tag("double", "reviewed", "yes", version=2)
        repo.set_description("double", "Doubles **things**")
        yield repo


@pytest.fixture
def target(tmp_path: Path) -> Repository:
    with Repository(tmp_path / "target") as repo:
        yield repo


def _snapshot(repo: Repository) -> tuple[object, list[str]]:
    files = sorted(str(p.relative_to(repo.root)) for p in repo.root.rglob("*")
                   if "modelport.db" not in p.name)
    return repo.list_models(), files


def test_export_import_round_trip(source: Repository, target: Repository, tmp_path: Path) -> None:
    archive = source.export_version("double:2", tmp_path / "double-2.tar.gz")
    assert archive.is_file()
    # The target already has a "double": the import becomes its next version.
    target.register(mlp(), "double")
    imported = target.import_archive(archive)
    assert imported.ref == "double:2"
    original = source.load("double:2")
    m = imported.manifest
    assert m.imported_from is not None
    assert m.imported_from["version"] == 2 and m.imported_from["archive"] == "double-2.tar.gz"
    assert (m.name, m.version) == ("double", 2)
    assert m.files == original.manifest.files  # byte-identical files, checksums re-verified
    assert m.signature == original.manifest.signature
    assert imported.tags == {"reviewed": "yes", "stage": "prod"}  # current tags travel
    assert imported.description == "the second"
    loaded = target.load("double:2")
    example = loaded.input_example()
    np.testing.assert_array_equal(example["x"], X * 3)
    np.testing.assert_allclose(Session(loaded.model_path).run(example)["y"], X * 6)


def test_import_into_new_repository_keeps_model_metadata(
    source: Repository, target: Repository, tmp_path: Path
) -> None:
    out = tmp_path / "exports"
    out.mkdir()
    archive = source.export_version("double", out)  # a directory: NAME-VERSION.tar.gz inside
    assert archive == out / "double-2.tar.gz"
    first = target.import_archive(archive)
    assert first.ref == "double:1"
    info = target.model("double")
    assert info.description == "Doubles **things**" and info.tags == {"owner": "ml"}
    again = target.import_archive(archive)  # importing twice: two versions, both intact
    assert again.ref == "double:2"
    renamed = target.import_archive(archive, name="copy")
    assert renamed.ref == "copy:1" and renamed.manifest.imported_from["name"] == "double"
    assert target.check() == []


def test_export_refuses_a_corrupt_version(source: Repository, tmp_path: Path) -> None:
    model = source.resolve("double:1").model_path
    model.write_bytes(model.read_bytes()[:-3])
    with pytest.raises(Exception, match="corrupt"):
        source.export_version("double:1", tmp_path / "x.tar.gz")
    assert not (tmp_path / "x.tar.gz").exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "plain-tar-no-manifest"])
def test_corrupt_archives_are_refused(
    source: Repository, target: Repository, tmp_path: Path, damage: str
) -> None:
    good = source.export_version("double:1", tmp_path / "good.tar.gz").read_bytes()
    bad = tmp_path / "bad.tar.gz"
    if damage == "garbage":
        bad.write_bytes(b"\x00\x01 this is not an archive" * 50)
    elif damage == "truncated":
        bad.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        with tarfile.open(bad, "w:gz") as tar:
            _add(tar, "model.onnx", b"x")
    before = _snapshot(target)
    with pytest.raises(RepositoryError) as info:
        target.import_archive(bad)
    assert "\n" not in str(info.value)
    assert _snapshot(target) == before


def _add(tar: tarfile.TarFile, name: str, data: bytes, kind: bytes = tarfile.REGTYPE,
         link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.type = kind
    info.linkname = link
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _rebuild(path: Path, members: dict[str, bytes], extra: list[tuple[str, bytes, bytes, str]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            _add(tar, name, data)
        for name, data, kind, link in extra:
            _add(tar, name, data, kind, link)
    return path


EVIL = [
    ("../evil", b"owned", tarfile.REGTYPE, ""),
    ("/tmp/modelport-evil-absolute", b"owned", tarfile.REGTYPE, ""),
    ("sub/../../evil", b"owned", tarfile.REGTYPE, ""),
    ("link", b"", tarfile.SYMTYPE, "/etc/passwd"),
    ("hard", b"", tarfile.LNKTYPE, "manifest.json"),
    ("dir", b"", tarfile.DIRTYPE, ""),
    ("dev", b"", tarfile.CHRTYPE, ""),
    ("fifo", b"", tarfile.FIFOTYPE, ""),
    ("run.sh", b"#!/bin/sh\necho owned\n", tarfile.REGTYPE, ""),
]


@pytest.mark.parametrize("evil", EVIL, ids=[e[0] for e in EVIL])
def test_archive_members_cannot_escape_or_smuggle(
    source: Repository, target: Repository, tmp_path: Path, evil: tuple[str, bytes, bytes, str]
) -> None:
    members = _members(source.export_version("double:1", tmp_path / "good.tar.gz"))
    bad = _rebuild(tmp_path / "bad.tar.gz", members, [evil])
    before = _snapshot(target)
    with pytest.raises(RepositoryError, match="refusing to import"):
        target.import_archive(bad)
    assert _snapshot(target) == before
    assert not (tmp_path / "evil").exists()
    assert not (target.root / "evil").exists()
    assert not Path("/tmp/modelport-evil-absolute").exists()


def test_symlink_in_place_of_the_model_is_refused(
    source: Repository, target: Repository, tmp_path: Path
) -> None:
    members = _members(source.export_version("double:1", tmp_path / "good.tar.gz"))
    del members["model.onnx"]
    bad = _rebuild(tmp_path / "bad.tar.gz", members,
                   [("model.onnx", b"", tarfile.SYMTYPE, "../../outside.onnx")])
    with pytest.raises(RepositoryError, match="not a regular file"):
        target.import_archive(bad)
    assert target.list_models() == []


def test_tampered_member_fails_its_checksum(
    source: Repository, target: Repository, tmp_path: Path
) -> None:
    members = _members(source.export_version("double:1", tmp_path / "good.tar.gz"))
    model = bytearray(members["model.onnx"])
    model[-1] ^= 0xFF
    members["model.onnx"] = bytes(model)
    bad = _rebuild(tmp_path / "bad.tar.gz", members, [])
    with pytest.raises(RepositoryError, match="model.onnx is corrupt \\(checksum mismatch\\)"):
        target.import_archive(bad)
    assert target.list_models() == []
    assert list((target.root / "tmp").iterdir()) == []


def test_manifest_listing_unsafe_names_is_refused(
    source: Repository, target: Repository, tmp_path: Path
) -> None:
    members = _members(source.export_version("double:1", tmp_path / "good.tar.gz"))
    manifest = json.loads(members["manifest.json"])
    manifest["files"]["../escape"] = "0" * 64
    members["manifest.json"] = json.dumps(manifest).encode()
    header = json.loads(members["archive.json"])
    header["manifest_sha256"] = hashlib.sha256(members["manifest.json"]).hexdigest()
    members["archive.json"] = json.dumps(header).encode()
    bad = _rebuild(tmp_path / "bad.tar.gz", members, [])
    with pytest.raises(RepositoryError, match="unsafe file name"):
        target.import_archive(bad)
    # And a manifest edited without fixing the header's checksum is simply corrupt.
    members["archive.json"] = _members(tmp_path / "good.tar.gz")["archive.json"]
    bad = _rebuild(tmp_path / "bad2.tar.gz", members, [])
    with pytest.raises(RepositoryError, match="does not match its checksum"):
        target.import_archive(bad)
    assert target.list_models() == []


def test_missing_archive(target: Repository, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        target.import_archive(tmp_path / "nope.tar.gz")


@pytest.mark.parametrize(
    "change",
    [{"tags": ["not", "a", "dict"]}, {"tags": {"../x": "v"}}, {"tags": {"k": "a\nb"}},
     {"model": "nope"}, {"description": 42}],
)
def test_bad_archive_metadata_is_refused(
    source: Repository, target: Repository, tmp_path: Path, change: dict[str, object]
) -> None:
    members = _members(source.export_version("double:1", tmp_path / "good.tar.gz"))
    header = json.loads(members["archive.json"])
    header.update(change)
    members["archive.json"] = json.dumps(header).encode()
    bad = _rebuild(tmp_path / "bad.tar.gz", members, [])
    before = _snapshot(target)
    with pytest.raises(RepositoryError):
        target.import_archive(bad)
    assert _snapshot(target) == before
