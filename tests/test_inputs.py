"""The job's reading of a local input as Spark reads it: Hadoop glob patterns, and the data
files under what they match (jobs/_inputs.py). The end-to-end runs are in
tests/test_score_job.py (a pattern scored) and tests/test_arrow_writer.py (an overwrite of
the input refused)."""

from __future__ import annotations

from pathlib import Path

from jobs.scoring.checks import data_files, is_glob, matches


def _tree(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")


def test_hadoop_patterns_match_what_hadoop_matches(tmp_path: Path) -> None:
    _tree(tmp_path, "2025/a.parquet", "2026/b.parquet", "2026/c.parquet", "2027/d.parquet",
          "x*y/e.parquet")  # fmt: skip

    def names(pattern: str) -> list[str]:
        found = matches(f"{tmp_path}/{pattern}")
        assert found is not None
        return [str(p.relative_to(tmp_path)) for p in found]

    assert names("{2025,2027}") == ["2025", "2027"]
    assert names("{2025/a,20{26/c,27/d}}.parquet") == ["2025/a.parquet", "2026/c.parquet",
                                                       "2027/d.parquet"]  # fmt: skip
    assert names("202[^5]/*.parquet") == ["2026/b.parquet", "2026/c.parquet", "2027/d.parquet"]
    assert names("202?/[ab].parquet") == ["2025/a.parquet", "2026/b.parquet"]
    assert names(r"x\*y") == ["x*y"]  # escaped: the name itself, not a pattern
    assert names("2028*") == [] and names("2028") == []
    assert matches("hdfs://nn/data/*") is None  # Spark checks a cluster filesystem itself


def test_is_glob_reads_escapes() -> None:
    assert is_glob("data/*") and is_glob("data/{a,b}") and is_glob("d/[ab]") and is_glob("d?")
    assert not is_glob("data/dt=2026-12-01") and not is_glob(r"data/x\*y")


def test_data_files_skip_what_spark_skips(tmp_path: Path) -> None:
    _tree(tmp_path, "in/part-0.parquet", "in/k=1/part-1.parquet", "in/_SUCCESS",
          "in/.part-0.parquet.crc", "in/_temporary/0/part-9.parquet", "in/k=2/.hidden/p.parquet")  # fmt: skip
    found = data_files(matches(f"{tmp_path}/in") or [])
    assert [str(p.relative_to(tmp_path / "in")) for p in found] == ["k=1/part-1.parquet",
                                                                    "part-0.parquet"]  # fmt: skip
    # a pattern's own matches too: Spark reads data/* without its _SUCCESS
    assert data_files(matches(f"{tmp_path}/in/*") or []) == found
    # but a directory named as the input is read, whatever its name
    _tree(tmp_path, "_staging/part-0.parquet")
    assert data_files(matches(f"{tmp_path}/_staging") or []) == [tmp_path / "_staging/part-0.parquet"]
