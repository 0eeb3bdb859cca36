"""The model repository's Python API on real files and a real SQLite index."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from modelport.convert.base import ConversionResult
from modelport.errors import (
    ConflictError,
    InputError,
    IntegrityError,
    ModelLoadError,
    NotFoundError,
    RepositoryError,
    UsageError,
    VerificationFailedError,
)
from modelport.repository import Manifest, ModelVersion, Ref, Repository, default_root, parse_ref
from modelport.runtime.session import Session
from modelport.signature import Signature
from modelport.verify.report import CheckResult, VerificationReport
from tests.onnx_models import doubler

X = np.arange(12, dtype=np.float32).reshape(4, 3)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    with Repository(tmp_path / "repo") as repository:
        yield repository


def register_doubler(repo: Repository, name: str = "double", **kwargs: object) -> ModelVersion:
    kwargs.setdefault("sample", {"x": X})
    return repo.register(doubler(), name, **kwargs)


def strings_model() -> onnx.ModelProto:
    """Identity over a string tensor: exercises input examples that numpy would pickle."""
    s = helper.make_tensor_value_info("s", TensorProto.STRING, ["batch"])
    out = helper.make_tensor_value_info("out", TensorProto.STRING, ["batch"])
    graph = helper.make_graph([helper.make_node("Identity", ["s"], ["out"])], "ident", [s], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- registering and reading -------------------------------------------------------------------


def test_register_writes_a_complete_package(repo: Repository) -> None:
    found = register_doubler(repo, tags={"team": "vision"}, description="# Doubler\nx * 2")
    assert (found.name, found.version, found.ref) == ("double", 1, "double:1")
    assert found.path == repo.root / "packages" / "double" / "1"
    assert sorted(p.name for p in found.path.iterdir()) == [
        "input_example.npz",
        "manifest.json",
        "model.onnx",
    ]
    m = found.manifest
    assert (m.name, m.version, m.framework, m.forced) == ("double", 1, "onnx", False)
    assert m.created.endswith("Z") and m.created.startswith("20")
    assert m.signature == Signature.from_onnx(doubler())
    assert m.signature.inputs[0].shape == ("batch", 3)
    assert m.runtime["opset"] == {"ai.onnx": 17}
    assert m.runtime["ir_version"] == 8
    assert m.runtime["onnxruntime"]
    assert m.source["onnx"] == onnx.__version__
    assert m.files == {
        "model.onnx": sha(found.path / "model.onnx"),
        "input_example.npz": sha(found.path / "input_example.npz"),
    }
    assert m.tags == {"team": "vision"} and found.tags == {"team": "vision"}
    assert found.description == m.description == "# Doubler\nx * 2"
    # The manifest on disk is plain JSON that round-trips.
    on_disk = json.loads((found.path / "manifest.json").read_text())
    assert Manifest.from_dict(on_disk) == m
    # Nothing executable in a package.
    assert not any(os.access(p, os.X_OK) for p in found.path.iterdir())


def test_registered_model_runs_and_example_round_trips(repo: Repository) -> None:
    found = repo.load(register_doubler(repo).ref)
    example = found.input_example()
    assert example is not None
    np.testing.assert_array_equal(example["x"], X)
    outputs = Session(found.model_path).run(example)
    np.testing.assert_allclose(outputs["y"], X * 2)


def test_input_example_is_capped_and_never_pickled(repo: Repository) -> None:
    big = np.ones((100, 3), np.float32)
    found = repo.register(doubler(), "double", sample={"x": big})
    assert found.input_example()["x"].shape == (16, 3)
    strings = np.array(["a", "bé", ""], dtype=object)
    found = repo.register(strings_model(), "strings", sample={"s": strings})
    with np.load(found.path / "input_example.npz", allow_pickle=False) as npz:
        assert npz["s"].dtype.kind == "U"  # stored as unicode, loadable without pickle
    example = found.input_example()
    assert example["s"].dtype == object
    assert example["s"].tolist() == ["a", "bé", ""]
    out = Session(found.model_path).run(example)
    assert list(out["out"]) == ["a", "bé", ""]


def test_pickled_input_example_is_never_loaded(repo: Repository, tmp_path: Path) -> None:
    found = register_doubler(repo)
    marker = tmp_path / "pickle-ran"
    # An object array is stored with pickle; unpickling this one would create the marker file.
    evil = np.array([_Boom(str(marker))], dtype=object)
    np.savez(found.path / "input_example.npz", x=evil)
    with pytest.raises(IntegrityError, match="cannot be loaded safely"):
        found.input_example()
    assert not marker.exists()
    with pytest.raises(IntegrityError):
        repo.load(found.ref)  # and the checksum no longer matches anyway


class _Boom:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (Path(self.path), "owned"))  # type: ignore[return-value]


def test_sample_may_be_a_file_or_a_bare_array(repo: Repository, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", X)
    from_file = repo.register(doubler(), "double", sample=tmp_path / "x.npy")
    np.testing.assert_array_equal(from_file.input_example()["x"], X)
    bare = repo.register(doubler(), "double", sample=X.astype(np.float64))  # cast to float32
    assert bare.input_example()["x"].dtype == np.float32


def test_register_without_sample_has_no_example(repo: Repository) -> None:
    found = repo.register(doubler(), "double")
    assert found.manifest.input_example is None
    assert found.input_example() is None
    assert set(found.manifest.files) == {"model.onnx"}


def test_versions_count_up_and_refs_resolve(repo: Repository) -> None:
    for _ in range(3):
        register_doubler(repo)
    assert [v.version for v in repo.list_versions("double")] == [1, 2, 3]
    assert repo.resolve("double").version == 3
    assert repo.resolve("double:2").version == 2
    assert repo.resolve(Ref("double", version=1)).version == 1
    repo.set_alias("double", "production", 2)
    assert repo.resolve("double@production").version == 2
    assert repo.load("double@production").ref == "double:2"
    # A second Repository on the same directory (another process, later) sees the same.
    with Repository(repo.root) as again:
        assert again.resolve("double@production").version == 2


def test_list_models(repo: Repository) -> None:
    assert repo.list_models() == []
    register_doubler(repo, name="b", description="second\nmore")
    register_doubler(repo, name="a")
    register_doubler(repo, name="a")
    repo.set_alias("a", "prod", 1)
    repo.set_tag("a", "owner", "ml")
    infos = repo.list_models()
    assert [i.name for i in infos] == ["a", "b"]
    a, b = infos
    assert (a.latest_version, a.versions, a.aliases, a.tags) == (2, 2, {"prod": 1}, {"owner": "ml"})
    assert b.description == "second\nmore"  # the first version's description became the model's
    assert repo.model("a") == a


def test_register_onnx_file_passes_through_and_verifies(repo: Repository, tmp_path: Path) -> None:
    path = tmp_path / "doubler.onnx"
    onnx.save_model(doubler(), str(path))
    found = repo.register(path, "double", sample={"x": X})
    assert found.manifest.framework == "onnx"
    assert found.manifest.verification is not None
    assert found.manifest.verification["passed"] is True
    assert found.manifest.verified is True
    np.testing.assert_array_equal(found.input_example()["x"], X)
    # The stored model is the same graph.
    stored = onnx.load_model(str(found.model_path))
    assert stored.graph == doubler().graph


def test_register_conversion_result_and_failed_verification(repo: Repository) -> None:
    failing = VerificationReport(checks=[CheckResult("onnx.checker", False, "broken on purpose")])
    result = ConversionResult(
        model=doubler(),
        signature=Signature.from_onnx(doubler()),
        framework="torch",
        sample={"x": X},
        source={"torch": "2.13.0", "exporter": "dynamo"},
        report=failing,
    )
    with pytest.raises(VerificationFailedError, match="broken on purpose") as info:
        repo.register(result, "net")
    assert info.value.report is failing
    assert repo.list_models() == []  # refused: nothing written
    forced = repo.register(result, "net", force=True)
    assert forced.manifest.forced is True
    assert forced.manifest.verified is False
    assert forced.manifest.verification["checks"][0]["detail"] == "broken on purpose"
    assert forced.manifest.source["exporter"] == "dynamo"
    assert forced.manifest.framework == "torch"

    result.report = VerificationReport(checks=[CheckResult("onnx.checker", True)])
    ok = repo.register(result, "net", source_info={"trained_on": "digits"})
    assert ok.manifest.forced is False and ok.manifest.verified is True
    assert ok.manifest.source["trained_on"] == "digits"
    assert ok.version == 2


def test_register_proto_with_verification_dict(repo: Repository) -> None:
    with pytest.raises(VerificationFailedError):
        repo.register(doubler(), "d", verification={"passed": False, "checks": []})
    found = repo.register(doubler(), "d", verification={"passed": True, "providers": ["CPU"]})
    assert found.manifest.verified is True
    assert found.manifest.runtime["providers"] == ["CPU"]


def test_register_refuses_bad_input_and_writes_nothing(repo: Repository) -> None:
    broken = doubler()
    broken.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(ModelLoadError, match="not valid"):
        repo.register(broken, "bad")
    with pytest.raises(InputError):
        repo.register(doubler(), "bad", sample={"x": np.ones((2, 5), np.float32)})
    with pytest.raises(UsageError):
        repo.register(doubler(), "bad", tags={"bad/key": "v"})
    with pytest.raises(NotFoundError):
        repo.register(repo.root / "missing.onnx", "bad")
    assert repo.list_models() == []
    assert not (repo.root / "packages" / "bad").exists()
    tmp = repo.root / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_model_names_differing_only_by_case_are_refused(repo: Repository) -> None:
    register_doubler(repo, name="Net")
    with pytest.raises(ConflictError, match="only by case"):
        register_doubler(repo, name="net")


# -- unknown references ------------------------------------------------------------------------


def test_unknown_model_version_alias(repo: Repository) -> None:
    with pytest.raises(NotFoundError, match="no models yet"):
        repo.resolve("nope")
    register_doubler(repo)
    with pytest.raises(NotFoundError, match="model 'nope' not found .*known models: double"):
        repo.resolve("nope")
    with pytest.raises(NotFoundError, match="model 'double' has no version 9; its versions: 1"):
        repo.resolve("double:9")
    with pytest.raises(NotFoundError, match="has no alias 'prod'"):
        repo.resolve("double@prod")
    with pytest.raises(NotFoundError):
        repo.list_versions("nope")


# -- aliases, tags, descriptions -----------------------------------------------------------------


def test_aliases(repo: Repository) -> None:
    register_doubler(repo)
    register_doubler(repo)
    assert repo.set_alias("double", "production", 1) is None
    assert repo.resolve("double:1").aliases == ["production"]
    # Setting an existing alias moves it (the usual promotion) and says where it was.
    assert repo.set_alias("double", "production", 2) == 1
    assert repo.resolve("double@production").version == 2
    assert repo.resolve("double:1").aliases == []
    # A create-only call refuses to move it: that is the "duplicate alias".
    with pytest.raises(ConflictError, match="alias 'production' already points at double:2"):
        repo.set_alias("double", "production", 1, move=False)
    assert repo.set_alias("double", "production", 2, move=False) == 2  # same target: no-op
    with pytest.raises(NotFoundError, match="no version 7"):
        repo.set_alias("double", "staging", 7)
    with pytest.raises(UsageError):
        repo.set_alias("double", "1bad", 1)
    with pytest.raises(UsageError):
        repo.set_alias("double", "ok", 0)
    repo.remove_alias("double", "production")
    with pytest.raises(NotFoundError):
        repo.resolve("double@production")
    with pytest.raises(NotFoundError, match="has no alias 'production'"):
        repo.remove_alias("double", "production")
    with pytest.raises(NotFoundError):
        repo.set_alias("nope", "production", 1)


def test_tags_on_models_and_versions(repo: Repository) -> None:
    register_doubler(repo, tags={"stage": "dev"})
    repo.set_tag("double", "owner", "team-a")
    repo.set_tag("double", "stage", "prod", version=1)
    repo.set_tag("double", "note", "path/with/slash ok", version=1)
    assert repo.model("double").tags == {"owner": "team-a"}
    found = repo.resolve("double:1")
    assert found.tags == {"note": "path/with/slash ok", "stage": "prod"}
    assert found.manifest.tags == {"stage": "dev"}  # the manifest keeps registration's tags
    repo.set_tag("double", "owner", "team-b")
    assert repo.model("double").tags == {"owner": "team-b"}
    repo.remove_tag("double", "owner")
    repo.remove_tag("double", "stage", version=1)
    assert repo.model("double").tags == {}
    assert repo.resolve("double").tags == {"note": "path/with/slash ok"}
    with pytest.raises(NotFoundError, match="has no tag 'owner'"):
        repo.remove_tag("double", "owner")
    with pytest.raises(NotFoundError, match="no version 4"):
        repo.set_tag("double", "k", "v", version=4)
    for key in ("", "../x", "a/b", "a\x00b"):
        with pytest.raises(UsageError):
            repo.set_tag("double", key, "v")
    with pytest.raises(UsageError, match="control characters"):
        repo.set_tag("double", "k", "line\nbreak")


def test_descriptions(repo: Repository) -> None:
    register_doubler(repo)
    repo.set_description("double", "Model **docs**")
    repo.set_description("double", "v1 notes", version=1)
    assert repo.model("double").description == "Model **docs**"
    assert repo.resolve("double:1").description == "v1 notes"
    repo.set_description("double", "", version=1)
    assert repo.resolve("double:1").description is None
    with pytest.raises(UsageError):
        repo.set_description("double", "a\x00b")
    with pytest.raises(NotFoundError):
        repo.set_description("nope", "x")


def test_delete_version(repo: Repository) -> None:
    for _ in range(2):
        register_doubler(repo)
    repo.set_alias("double", "production", 2)
    with pytest.raises(ConflictError) as info:
        repo.delete_version("double", 2)
    assert str(info.value) == "alias 'production' points at double:2; move or remove it first"
    assert repo.load("double:2").version == 2  # untouched
    repo.set_alias("double", "production", 1)
    repo.delete_version("double", 2)
    assert not (repo.root / "packages" / "double" / "2").exists()
    with pytest.raises(NotFoundError):
        repo.resolve("double:2")
    assert repo.resolve("double").version == 1
    # Numbers are never reused: a cached "double:2" can never mean another model.
    assert register_doubler(repo).version == 3
    with pytest.raises(NotFoundError):
        repo.delete_version("double", 2)
    repo.remove_alias("double", "production")
    repo.delete_version("double", 1)
    repo.delete_version("double", 3)
    assert repo.model("double").latest_version is None
    with pytest.raises(NotFoundError, match="has no versions"):
        repo.resolve("double")


# -- integrity -----------------------------------------------------------------------------------


def test_tampered_file_is_refused_on_load(repo: Repository) -> None:
    found = register_doubler(repo)
    model = found.model_path
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    assert repo.resolve("double:1").version == 1  # resolve is cheap: it hashes nothing
    with pytest.raises(IntegrityError) as info:
        repo.load("double:1")
    assert str(info.value) == (
        "model 'double:1' file model.onnx is corrupt (checksum mismatch); re-register or import "
        "it again"
    )


def test_truncated_or_missing_files_are_refused(repo: Repository) -> None:
    found = register_doubler(repo)
    example = found.path / "input_example.npz"
    example.write_bytes(example.read_bytes()[:-10])
    with pytest.raises(IntegrityError, match="file input_example.npz is corrupt"):
        repo.load("double")
    found = register_doubler(repo)
    found.model_path.unlink()
    with pytest.raises(IntegrityError, match="file model.onnx is missing"):
        repo.load("double:2")


def test_tampered_manifest_and_extra_files_are_refused(repo: Repository) -> None:
    found = register_doubler(repo)
    manifest = found.path / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"dtype": "float32"', '"dtype": "float64"'))
    with pytest.raises(IntegrityError, match="manifest.json is corrupt"):
        repo.load("double")
    found = register_doubler(repo)
    (found.path / "run.sh").write_text("#!/bin/sh\nrm -rf /\n")
    with pytest.raises(IntegrityError, match="unexpected file"):
        repo.load("double:2")
    assert len(repo.check()) == 2


# -- names and references ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", "..", "../x", "a/b", "a\\b", "/abs", "a\x00b", "a\nb", "a\tb", ".hidden", "-x",
     "a..b", "x" * 129, "ümlaut", "a b", "a:b", "a@b"],
)
def test_invalid_model_names_are_refused(repo: Repository, name: str) -> None:
    with pytest.raises(UsageError):
        repo.register(doubler(), name)
    assert repo.list_models() == []
    assert not (repo.root / "packages").exists() or list((repo.root / "packages").iterdir()) == []


def test_valid_names_and_refs() -> None:
    assert parse_ref("resnet50") == Ref("resnet50")
    assert parse_ref("my.model_v2-x:12") == Ref("my.model_v2-x", version=12)
    assert parse_ref("net@production") == Ref("net", alias="production")
    assert str(parse_ref("net:3")) == "net:3" and str(parse_ref("net@prod")) == "net@prod"
    for bad in ("", "net:", "net:x", "net:0", "net:-1", "net@", "net@3", "../x:1", "a/b@prod",
                "net:١"):
        with pytest.raises(UsageError):
            parse_ref(bad)


# -- the repository directory --------------------------------------------------------------------


def test_default_root_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home"
    with Repository() as repo:
        assert repo.root == tmp_path / "home"
        assert (tmp_path / "home" / "modelport.db").is_file()
    monkeypatch.delenv("MODELPORT_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "modelport"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_root() == tmp_path / "user" / ".local" / "share" / "modelport"


def test_directories_that_are_not_repositories(tmp_path: Path) -> None:
    other = tmp_path / "project"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(RepositoryError, match="is not a modelport repository"):
        Repository(other)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]  # unchanged

    (tmp_path / "afile").write_text("x")
    with pytest.raises(RepositoryError, match="it is a file"):
        Repository(tmp_path / "afile")
    # A path below a regular file can never be created: the one-line "cannot create" error.
    with pytest.raises(RepositoryError, match="cannot create the repository") as info:
        Repository(tmp_path / "afile" / "repo")
    assert "\n" not in str(info.value)

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "modelport.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(RepositoryError, match="is not a modelport repository"):
        Repository(garbage)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with sqlite3.connect(foreign / "modelport.db") as conn:
        conn.execute("CREATE TABLE things (x)")
    with pytest.raises(RepositoryError, match="is not a modelport repository"):
        Repository(foreign)

    orphaned = tmp_path / "orphaned"  # an index deleted by hand: its packages must survive
    (orphaned / "packages" / "net" / "1").mkdir(parents=True)
    with pytest.raises(RepositoryError, match="holds packages but no index"):
        Repository(orphaned)

    half = tmp_path / "half"  # an empty index file: creation was interrupted; finish it
    half.mkdir()
    (half / "modelport.db").touch()
    with Repository(half) as repo:
        register_doubler(repo)

    empty = tmp_path / "empty"
    empty.mkdir()
    with Repository(empty) as repo:  # an empty directory becomes a repository
        assert repo.list_models() == []


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root ignores permission bits, so chmod cannot make a directory read-only; "
    "test_unwritable_location_is_a_one_line_error_even_for_root covers the unwritable case",
)
def test_read_only_repository(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    with Repository(root) as repo:
        register_doubler(repo)
    root.chmod(0o555)
    try:
        with pytest.raises(RepositoryError, match="read-only"):
            Repository(root)
        ro_parent = tmp_path / "ro"
        ro_parent.mkdir(mode=0o555)
        with pytest.raises(RepositoryError, match="read-only"):
            Repository(ro_parent / "new")
    finally:
        root.chmod(0o755)


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_unwritable_location_is_a_one_line_error_even_for_root() -> None:
    # sysfs refuses new directories to everyone, root included (EPERM): the same path a
    # read-only directory takes for a normal user.
    with pytest.raises(RepositoryError, match="read-only") as info:
        Repository("/sys/modelport-test-repo")
    assert "\n" not in str(info.value)
    assert not Path("/sys/modelport-test-repo").exists()


def test_gc_removes_leftovers_but_keeps_versions(repo: Repository) -> None:
    register_doubler(repo)
    orphan = repo.root / "packages" / "double" / "7"
    orphan.mkdir()
    (orphan / "model.onnx").write_bytes(b"half")
    stale = repo.root / "tmp" / "stage-deadbeef"
    stale.mkdir()
    (repo.root / "tmp" / "stage-deadbeef.lock").touch()  # its owner is gone: lock is free
    trash = repo.root / "tmp" / "trash-1234"
    trash.mkdir()
    assert [v.version for v in repo.list_versions("double")] == [1]  # orphans are invisible
    assert repo.gc() == 3
    assert not orphan.exists() and list((repo.root / "tmp").iterdir()) == []
    assert repo.load("double:1").version == 1
    assert repo.check() == []
