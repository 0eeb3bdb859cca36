"""The scores written by pyarrow in the Python workers, committed by the driver.

Spark's Parquet writer is row-based: the scores come back from a worker as Arrow batches, the
JVM turns every row into an ``UnsafeRow``, observes it, projects it and hands each value to
parquet-mr, most of the executor's time in the job (docs/benchmarks.md).

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

from formats.errors import InputError
from jobs.scoring.checks import check_output, local_path
from jobs.scoring.output.summary import SUMMARY_NAME
from jobs.scoring.rules import ERROR_COLUMN
from jobs.scoring.worker import PROVIDER, WORKER

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql.types import StructType

    from jobs.scoring.transform import Plan

__all__ = ["CODECS", "CODEC_CONF", "MAX_ROWS_CONF", "ArrowSink", "result_schema"]

# Spark's parquet codecs that pyarrow writes the same way (Hadoop's lz4 and lzo framings are
# not pyarrow's: Spark's writer keeps those)
CODECS = {"none": "none", "uncompressed": "none", "snappy": "snappy", "gzip": "gzip",
           "zstd": "zstd", "lz4_raw": "lz4", "brotli": "brotli"}  # fmt: skip
CODEC_CONF = "spark.sql.parquet.compression.codec"
MAX_ROWS_CONF = "spark.sql.files.maxRecordsPerFile"  # Spark's: 0 or less is no limit
# a row group is written when the buffered batches reach this (Spark's is 128 MB of encoded
# data; this bounds the worker's memory instead, on top of the batch it is scoring)
ROW_GROUP_BYTES = 32 * 2**20


def result_schema() -> StructType:
    """One row per task: the files it wrote, and what the run summary observes of its rows."""
    from pyspark.sql import types as T

    names, whole, count = T.ArrayType(T.StringType(), False), T.IntegerType(), T.LongType()
    return T.StructType([
        T.StructField(name, kind, False) for name, kind in (
            ("partition", whole), ("attempt", whole), ("files", names), ("rows", count),
            ("scored", count), ("providers", names), ("workers", names))
    ])  # fmt: skip


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

    def task(self, plan: Plan) -> _WriteTask:
        """The function mapInArrow runs: ``plan``'s scoring, its batches written by this
        worker, one result row back. The id column is written without a dictionary (one of
        unique values only costs)."""
        import pyarrow as pa
        from pyspark.sql.pandas.types import to_arrow_schema

        tags = (PROVIDER, WORKER)
        written = [f for f in plan.task.schema if f.name not in tags]
        written += [pa.field(n, pa.string(), nullable=False) for n in plan.literals]
        self.schema = schema = pa.schema(written)
        dictionary = tuple(n for n in schema.names if n != plan.row_id)
        files = _Files(str(self.staging), self.run, schema, self.codec, dictionary, self.max_rows)
        return _WriteTask(plan.task, files, tuple(plan.literals.values()),
                          ERROR_COLUMN if plan.error else None, tags,
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

    def write(self, plan: Plan) -> int:
        """Runs ``plan`` with the workers writing its scores and commits what its tasks
        wrote; a failure leaves the output as it was. Returns the rows written."""
        results = plan.batches.mapInArrow(self.task(plan), result_schema())
        if plan.metrics is not None:
            results = plan.metrics.observe_tasks(results)
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
    score: Any  # jobs.scoring.worker.ArrowTask: input batches -> scored batches
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
