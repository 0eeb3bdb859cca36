"""The score job's typed settings loader: TOML, --set overrides, flags, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from formats.errors import UsageError
from jobs.scoring.session import read_properties
from jobs.scoring.settings import DEFAULT_CONF, load_settings

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_local_conf_is_the_default_and_names_its_spark_properties() -> None:
    s = load_settings(None)
    assert s.source == str(DEFAULT_CONF)
    assert s.job.parity_gate is True and s.job.parity_rows == 1000
    assert s.execution.provider == "cpu" and s.execution.max_records_per_batch == 10000
    assert s.output.id_column == "row_id" and s.output.partition_by == ()
    # relative to the TOML file, so the job finds it from any working directory
    assert Path(s.spark.properties) == CONF / "spark" / "local.conf"


@pytest.mark.parametrize("name", ["local", "cluster", "gpu"])
def test_every_shipped_conf_loads_and_its_properties_file_parses(name: str) -> None:
    s = load_settings(CONF / f"{name}.toml")
    props = read_properties(s.spark.properties)
    assert props["spark.python.worker.reuse"] == "true"
    assert "log4j2.properties" in props["spark.driver.extraJavaOptions"]
    if name == "gpu":
        assert s.execution.provider == "cuda"
        assert props["spark.task.resource.gpu.amount"] == "1"
        assert props["spark.executor.resource.gpu.discoveryScript"].endswith("gpu-discovery.sh")
    if name == "cluster":
        assert props["spark.master"] == "spark://127.0.0.1:7077"
        assert props["spark.pyspark.python"] == "./environment/bin/python"


def test_set_overrides_are_typed_and_flags_win(tmp_path: Path) -> None:
    conf = tmp_path / "job.toml"
    conf.write_text('[job]\nbundle = "from-toml"\nparity_rows = 10\n[output]\nmode = "append"\n')
    s = load_settings(
        conf,
        [
            "job.parity_rows=25",
            "job.parity_gate=false",
            'output.partition_by=["label", "island"]',
            "output.mode=overwrite",
            "job.bundle=from-set",
            "job.input=2024",  # a string key keeps a number-looking value as text
        ],
        {"job.bundle": "from-flag", "job.output": None},
    )
    assert s.job.parity_rows == 25 and s.job.parity_gate is False
    assert s.output.partition_by == ("label", "island")
    assert s.output.mode == "overwrite"
    assert s.job.bundle == "from-flag"
    assert s.job.input == "2024"
    assert s.job.output == ""  # a None flag leaves the value alone


def test_python_values_are_typed_as_toml_values_and_win_over_set() -> None:
    """score_frame's settings: Python values, no text round trip (a tuple is a list)."""
    s = load_settings(None, ["job.parity_rows=7"], None,
                      {"job.parity_rows": 9, "output.passthrough": ("island",),
                       "execution.string_codes": False})  # fmt: skip
    assert s.job.parity_rows == 9 and s.output.passthrough == ("island",)
    assert s.execution.string_codes is False
    with pytest.raises(UsageError, match="'job.input' takes a string, got 2024"):
        load_settings(None, values={"job.input": 2024})


def test_comma_list_in_set() -> None:
    assert load_settings(None, ["output.passthrough=a,b"]).output.passthrough == ("a", "b")


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("execution.provder=cuda", "did you mean 'execution.provider'?"),
        ("job.parity_gat=false", "did you mean 'job.parity_gate'?"),
        ("outptu.mode=append", "did you mean 'output.mode'?"),
    ],
)
def test_unknown_key_names_it_and_the_nearest(item: str, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        load_settings(None, [item])
    message = str(info.value)
    assert f"unknown conf key {item.split('=')[0]!r}" in message and expected in message
    assert "\n" not in message


def test_unknown_key_in_toml_names_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text("[execution]\nallow_cpu_fallbak = true\n")
    with pytest.raises(UsageError, match=r"allow_cpu_fallbak.*bad\.toml.*allow_cpu_fallback"):
        load_settings(conf)


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ("job.parity_gate=3", "takes true or false"),
        ("job.parity_rows=many", "takes an integer"),
        ("job.parity_rows=true", "takes an integer"),  # a bool is not an int here
        ("job.parity_rows=0", "must be 1 or more"),
        ("output.mode=replace", "use one of error, errorifexists, overwrite, append"),
        ("output.writer=pyspark", "use one of auto, spark, arrow"),
        ("execution.provider=tpu", "use one of cpu, cuda"),
        ("output.partition_by=[1, 2]", "takes a list of strings"),
        ("novalue", "takes section.key=value"),
    ],
)
def test_bad_values_are_one_line_errors(item: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        load_settings(None, [item])


def test_broken_or_missing_toml(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("[job\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_settings(bad)
    with pytest.raises(UsageError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")


def test_properties_file_syntax(tmp_path: Path) -> None:
    props = tmp_path / "p.conf"
    props.write_text("# comment\nspark.a  1\nspark.b=two words\n\nspark.c: x\n! other comment\n")
    assert read_properties(props) == {"spark.a": "1", "spark.b": "two words", "spark.c": "x"}


def test_relative_jvm_paths_resolve_against_the_conf_s_project(tmp_path: Path) -> None:
    """``python -m jobs.score`` may run outside the repository: the log4j2 file and the JVM's
    class archive named relative to it are found from the properties file's project; a path
    that exists nowhere is left as written (the JVM then starts without it, silently)."""
    from jobs.scoring.session import _absolute_log4j

    props = tmp_path / "conf" / "spark" / "local.conf"
    props.parent.mkdir(parents=True)
    # names that exist under the project only, not under the tests' working directory
    (tmp_path / "conf" / "spark" / "log4j2-elsewhere.properties").write_text("")
    (tmp_path / ".cache" / "jvm-elsewhere").mkdir(parents=True)
    (tmp_path / ".cache" / "jvm-elsewhere" / "driver.jsa").write_bytes(b"")
    value = ("-Dlog4j2.configurationFile=conf/spark/log4j2-elsewhere.properties "
             "-XX:SharedArchiveFile=.cache/jvm-elsewhere/driver.jsa -Xlog:cds=off "
             "-XX:SharedArchiveFile=nowhere.jsa")  # fmt: skip
    got = _absolute_log4j(value, props).split()
    log4j = tmp_path / "conf/spark/log4j2-elsewhere.properties"
    assert got[0] == f"-Dlog4j2.configurationFile={log4j}"
    assert got[1] == f"-XX:SharedArchiveFile={tmp_path / '.cache/jvm-elsewhere/driver.jsa'}"
    assert got[2:] == ["-Xlog:cds=off", "-XX:SharedArchiveFile=nowhere.jsa"]
