"""The scores written by pyarrow in the Python workers, committed by the driver.

Spark's Parquet writer is row-based: the scores come back from a worker as Arrow batches, the
JVM turns every row into an ``UnsafeRow``, observes it, projects it and hands each value to
parquet-mr. A JFR profile of the job (``local[1]``, 1M rows) put 41% of the task thread's
samples in the Parquet write and most of another 27% in those projections; an A/B of the
no-op that writes the job's columns (``floor_output``) against the same no-op writing them with
pyarrow in the worker cut its CPU from 1.78 to 1.29 s per 1M rows (docs/bench-2026-12-06-writer.md).

``output.writer = "arrow"`` (and ``"auto"`` where it applies) writes the same columns with
pyarrow where they already are, in the worker, and sends the JVM one row per task. What
Spark's commit protocol guarantees is kept, the way Hadoop's FileOutputCommitter keeps it:

- each task attempt writes its own files under ``<output>/_temporary/modelport-<run>/``
  (``part-<partition>-<run>-t<task attempt id>-c000.parquet``, then ``c001``... past
  ``spark.sql.files.maxRecordsPerFile`` rows), and returns their names and its row count;
- Spark hands the driver the result of exactly one successful attempt per partition; the
  driver moves those files, and only those, into the output, so a failed or speculative
  attempt's file is never committed (no row lost, none twice), then writes ``_SUCCESS``;
- the old output of an ``overwrite`` run is removed only at commit, after every task
  succeeded; a run that fails removes its staging directory and leaves the output as it was.

It writes local (or ``file://``) paths, which on a cluster must be a filesystem that the driver
and the executors share (the commit checks that it sees every file a task reported). ``auto``
uses it for such paths without ``partition_by`` and Spark's writer otherwise (HDFS, S3 and
the others go through Hadoop's filesystems and their committers). Like Spark's writer, it
starts a task's next file every ``spark.sql.files.maxRecordsPerFile`` rows where that is set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from formats.errors import InputError, UsageError
from jobs._summary import SUMMARY_NAME

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

    from jobs._settings import Settings

__all__ = ["ArrowSink", "arrow_sink", "check_append", "check_output", "choose_writer",
           "local_path", "result_schema", "write_scored", "written_schema"]  # fmt: skip

# Spark's parquet codecs that pyarrow writes the same way (Hadoop's lz4 and lzo framings are
# not pyarrow's: Spark's writer keeps those)
_CODECS = {"none": "none", "uncompressed": "none", "snappy": "snappy", "gzip": "gzip",
           "zstd": "zstd", "lz4_raw": "lz4", "brotli": "brotli"}  # fmt: skip
CODEC_CONF = "spark.sql.parquet.compression.codec"
MAX_ROWS_CONF = "spark.sql.files.maxRecordsPerFile"  # Spark's: 0 or less is no limit
# a row group is written when the buffered batches reach this (Spark's is 128 MB of encoded
# data; this bounds the worker's memory instead, on top of the batch it is scoring)
ROW_GROUP_BYTES = 32 * 2**20


def local_path(location: str) -> Path | None:
    """The local path of a local or ``file://`` location; None for a cluster filesystem's
    (Spark's own one-line errors report those)."""
    if "://" not in location or location.startswith("file://"):
        return Path(location.removeprefix("file://")).absolute()
    return None


def check_output(location: str, mode: str) -> None:
    """A local output that exists refused in the ``error`` mode, as Spark's writer refuses it,
    before anything runs."""
    path = local_path(location)
    if mode in ("error", "errorifexists") and path is not None and path.exists():
        raise UsageError(f"output {location!r} exists and output.mode is {mode}; remove it, "
                         "or pass --set output.mode=overwrite (or append)")  # fmt: skip


def check_append(spark: Any, output: str, written: StructType,
                 partition_by: Sequence[str] = ()) -> None:  # fmt: skip
    """An ``append`` writes the columns the output holds, typed the same, or nothing: Parquet
    readers take one file's schema, so another model's columns (a regressor's ``prediction``
    beside a classifier's ``label``, or ``error`` from on_invalid = null) would be invisible or
    null to them (seen here: 10,000 rows read back, half of them with a null label and no
    prediction). Partition columns are compared by name: Spark infers their types."""
    from pyspark.errors import AnalysisException

    try:
        held = spark.read.parquet(output).schema
    except AnalysisException:  # no output yet, or none with data files
        return
    have = {f.name: f.dataType.simpleString() for f in held.fields}
    new = {f.name: f.dataType.simpleString() for f in written.fields}
    typed = [n for n in new if n in have and n not in partition_by and have[n] != new[n]]
    only_new, only_held = [n for n in new if n not in have], [n for n in have if n not in new]
    if not (typed or only_new or only_held):
        return
    parts = ([f"writes {only_new}, which it does not hold"] if only_new else []) + (
        [f"does not write {only_held}, which it holds"] if only_held else []) + [
        f"writes {n} as {new[n]}, not {have[n]}" for n in typed]  # fmt: skip
    raise InputError(
        f"appending to {output!r} would mix two schemas (Parquet readers take one file's): "
        f"this run {'; '.join(parts)}; write to another output, or set output.mode = overwrite"
    )


def written_schema(scored: DataFrame, sink: ArrowSink | None) -> StructType:
    """The columns the run writes: ``scored``'s for Spark's writer; the workers' files' where
    they write (``scored`` is then one row per task)."""
    if sink is None:
        return scored.schema
    from pyspark.sql.pandas.types import from_arrow_schema

    assert sink.schema is not None, "jobs._udf.score() sets it"
    return from_arrow_schema(sink.schema)


def result_schema() -> StructType:
    """One row per task: the files it wrote, and what the run summary observes of its rows."""
    from pyspark.sql import types as T

    names, whole, count = T.ArrayType(T.StringType(), False), T.IntegerType(), T.LongType()
    return T.StructType([
        T.StructField(name, kind, False) for name, kind in (
            ("partition", whole), ("attempt", whole), ("files", names), ("rows", count),
            ("scored", count), ("providers", names), ("workers", names))
    ])  # fmt: skip


def write_scored(scored: DataFrame, sink: ArrowSink | None, output: str, mode: str,
                 partition_by: Sequence[str] = ()) -> None:  # fmt: skip
    """``scored`` (jobs._udf.score's DataFrame) written to ``output``: committed by ``sink``
    where the workers write (its results are one row per task), else by Spark's writer."""
    if sink is not None:
        sink.write(scored)
        return
    writer = scored.write.mode(mode)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.parquet(output)


def choose_writer(
    setting: str, output: str, partition_by: Sequence[str], codec: str, connect: bool = False
) -> tuple[str, str]:
    """("arrow" or "spark", why): ``output.writer`` resolved for this output. ``arrow`` asked
    for where it cannot write is a usage error (exit 2) before anything runs. On Spark Connect
    the driver that commits is this client, which may not see the executors' files: ``auto``
    leaves that to Spark's writer, ``arrow`` says they share a filesystem (the commit checks)."""
    why_not = ""
    if local_path(output) is None:
        why_not = f"output {output!r} is not a local path (Hadoop's filesystems write it)"
    elif partition_by:
        why_not = "output.partition_by is set"
    elif codec.lower() not in _CODECS:
        why_not = f"{CODEC_CONF} is {codec!r}, which pyarrow does not write"
    if setting == "spark":
        return "spark", "Spark's writer (output.writer = spark)"
    if setting == "arrow" and why_not:
        raise UsageError(f"output.writer = arrow cannot write this run: {why_not}; "
                         "use output.writer = spark or auto")  # fmt: skip
    if setting == "auto" and connect and not why_not:
        why_not = "a Spark Connect client, which may not see the executors' files"
    if why_not:
        return "spark", f"Spark's writer ({why_not})"
    return "arrow", "pyarrow in the Python workers, one file per task, committed by the driver"


def arrow_sink(spark: Any, settings: Settings) -> tuple[ArrowSink | None, str]:
    """(the sink, or None for Spark's writer; one line for the run summary) for the job's
    output in this session."""
    from jobs._session import is_connect

    out = settings.output
    codec = str(spark.conf.get(CODEC_CONF, "snappy")).lower()
    kind, why = choose_writer(out.writer, settings.job.output, out.partition_by, codec,
                              is_connect(spark))  # fmt: skip
    if kind == "spark":
        return None, why
    max_rows = max(int(spark.conf.get(MAX_ROWS_CONF, "0")), 0)  # Spark refuses a non-number
    sink = ArrowSink(settings.job.output, out.mode, _CODECS[codec], max_rows)
    return sink, why


@dataclass
class ArrowSink:
    """One run's staged write to ``output`` (a local path) in ``mode``: :meth:`task` wraps the
    scoring function mapInArrow runs, :meth:`commit` or :meth:`abort` ends the run."""

    output: str
    mode: str
    codec: str = "snappy"
    max_rows: int = 0  # rows per file (spark.sql.files.maxRecordsPerFile); 0: one per task
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created: bool = False  # the output directory is this run's: abort removes it
    schema: pa.Schema | None = None  # the written columns' (set by task())

    @property
    def root(self) -> Path:
        path = local_path(self.output)
        assert path is not None, "choose_writer() sends only local outputs here"
        return path

    @property
    def staging(self) -> Path:
        return self.root / "_temporary" / f"modelport-{self.run}"

    def prepare(self) -> None:
        """The staging directory; the output mode checked as Spark's writer checks it."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise InputError(f"output {self.output!r} is a file; pass a directory")
        check_output(self.output, self.mode)  # again: a caller may not have checked it
        self.created = not root.exists()
        self.staging.mkdir(parents=True)

    def task(self, score: Any, schema: pa.Schema, literals: dict[str, str],
             error: str | None, tags: tuple[str, str], unique: str) -> _WriteTask:  # fmt: skip
        """The function mapInArrow runs: ``score``'s batches written, one result row back.
        ``schema`` is the output's: columns of the scored batch, then ``literals`` (constant
        string columns); ``error`` the column that is null on a scored row (None: every row
        is scored), ``tags`` the provider and worker columns, ``unique`` the id column
        (written without a dictionary: one of unique values only costs, "" for none)."""
        self.schema = schema
        dictionary = tuple(n for n in schema.names if n != unique)
        from pyspark.sql.pandas.types import to_arrow_schema

        files = _Files(str(self.staging), self.run, schema, self.codec, dictionary, self.max_rows)
        return _WriteTask(score, files, tuple(literals.values()), error, tags,
                          to_arrow_schema(result_schema()))  # fmt: skip

    def commit(self, results: Sequence[Any]) -> int:
        """Moves the files of the reported attempts into the output (one per partition with
        rows), removes everything else staged and, for ``overwrite``, the old output; writes
        ``_SUCCESS``. Returns the rows written."""
        import pyarrow.parquet as pq

        staging, root = self.staging, self.root
        by_partition = {int(r["partition"]): r for r in results}
        if len(by_partition) != len(results):  # Spark returns one result per partition
            raise RuntimeError(f"{len(results)} task results for {len(by_partition)} partitions")
        files = [staging / name for r in results for name in r["files"]]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise InputError(
                f"the driver does not see {len(missing)} file(s) the executors wrote under "
                f"{staging} (first: {missing[0]}); output.writer = arrow needs a filesystem "
                "that the driver and the executors share: use output.writer = spark"
            )
        if self.mode == "append":  # from here on, the last run's summary no longer holds
            (root / SUMMARY_NAME).unlink(missing_ok=True)
        if self.mode == "overwrite":
            for old in root.iterdir():
                if old.name != "_temporary":
                    shutil.rmtree(old) if old.is_dir() else old.unlink()
        if not files:  # every partition empty: one file with the schema, as Spark's writer
            assert self.schema is not None, "score(..., sink=) sets the schema"
            files = [staging / f"part-00000-{self.run}-c000.parquet"]
            pq.write_table(self.schema.empty_table(), files[0])
        for f in files:
            os.replace(f, root / f.name)
        # failed and speculative attempts' files, and what a run killed before its commit or
        # abort left (Spark's committer also removes the whole of _temporary at commit)
        shutil.rmtree(root / "_temporary")
        (root / "_SUCCESS").touch()
        return sum(int(r["rows"]) for r in results)

    def write(self, results: DataFrame) -> int:
        """Runs ``results`` (jobs._udf.score's DataFrame with this sink) and commits what its
        tasks wrote; a failure leaves the output as it was. Returns the rows written."""
        self.prepare()
        try:
            return self.commit([row.asDict() for row in results.collect()])
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        _remove_if_empty(self.root / "_temporary")
        if self.created:
            _remove_if_empty(self.root)


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):  # not empty, or gone
        path.rmdir()


@dataclass
class _Files:
    """One task's files: its batches buffered into row groups of about ``ROW_GROUP_BYTES``,
    and a new file (``-c001``, ``-c002``...) every ``max_rows`` rows where that is set."""

    staging: str
    run: str
    schema: pa.Schema  # the written columns: the scored batch's, then the literals
    codec: str
    dictionary: tuple[str, ...]  # the columns written with a dictionary (pyarrow's default)
    max_rows: int = 0
    stem: str = ""  # part-<partition>-<run>-t<task attempt id>: each task's own
    # what the task wrote so far (not fields of __init__: replace() starts them afresh)
    names: list[str] = field(default_factory=list, init=False)
    _writer: pq.ParquetWriter | None = field(default=None, init=False)
    _buffered: list[pa.RecordBatch] = field(default_factory=list, init=False)
    _size: int = field(default=0, init=False)
    _in_file: int = field(default=0, init=False)

    def add(self, batch: pa.RecordBatch) -> None:
        rest: pa.RecordBatch | None = batch
        while rest is not None and rest.num_rows:
            room = self.max_rows - self._in_file if self.max_rows else rest.num_rows
            head, rest = (rest, None) if room >= rest.num_rows else (
                rest.slice(0, room), rest.slice(room))  # fmt: skip
            self._buffered.append(head)
            self._size, self._in_file = self._size + head.nbytes, self._in_file + head.num_rows
            if self._size >= ROW_GROUP_BYTES:
                self._flush()
            if self._in_file == self.max_rows:  # never where max_rows is 0
                self.close()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_batches(self._buffered)
        if self._writer is None:
            self.names.append(f"{self.stem}-c{len(self.names):03d}.parquet")
            self._writer = pq.ParquetWriter(f"{self.staging}/{self.names[-1]}", self.schema,
                                            compression=self.codec,
                                            use_dictionary=list(self.dictionary))  # fmt: skip
        self._writer.write_table(table, row_group_size=table.num_rows)
        self._buffered, self._size = [], 0

    def close(self) -> None:
        """Writes what is buffered and closes the file (the next batch opens another)."""
        try:
            if self._buffered:
                self._flush()
        finally:
            if self._writer is not None:
                self._writer.close()
            self._writer, self._in_file = None, 0


@dataclass(frozen=True)
class _WriteTask:
    score: Any  # jobs._udf._ArrowTask: input batches -> scored batches
    files: _Files
    literals: tuple[str, ...]
    error: str | None
    tags: tuple[str, str]
    result: pa.Schema  # result_schema()'s

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa
        from pyspark import TaskContext

        context = TaskContext.get()
        assert context is not None, "runs in a Spark task"
        partition, attempt = context.partitionId(), context.attemptNumber()
        # Spark's task attempt id is unique in the application (the attempt number restarts
        # with a stage's retry); a fresh _Files: a worker may run several tasks
        files = replace(self.files, stem=f"part-{partition:05d}-{self.files.run}"
                                         f"-t{context.taskAttemptId()}")  # fmt: skip
        schema = files.schema
        rows = scored = 0
        found: tuple[set[str], set[str]] = (set(), set())
        scored_columns = schema.names[: len(schema.names) - len(self.literals)]
        try:
            for batch in self.score(batches):
                n = batch.num_rows
                for seen, tag in zip(found, self.tags, strict=True):  # non-null on one row
                    seen.update(batch.column(tag).drop_null().to_pylist())
                # null in the error column: the model scored the row
                scored += batch.column(self.error).null_count if self.error else n
                out = [batch.column(c) for c in scored_columns]
                out += [pa.repeat(pa.scalar(v, pa.string()), n) for v in self.literals]
                files.add(pa.RecordBatch.from_arrays(out, schema=schema))
                rows += n
        finally:
            files.close()
        yield pa.RecordBatch.from_pylist(
            [{"partition": partition, "attempt": attempt, "files": files.names, "rows": rows,
              "scored": scored, "providers": sorted(found[0]), "workers": sorted(found[1])}],
            schema=self.result,
        )  # fmt: skip
