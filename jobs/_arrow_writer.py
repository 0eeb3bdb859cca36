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

- each task attempt writes its own file under ``<output>/_temporary/modelport-<run>/``
  (``part-<partition>-<run>-t<task attempt id>.parquet``: Spark's id is unique in the
  application, where the attempt number restarts with a stage's retry), and returns its name
  and row count;
- Spark hands the driver the result of exactly one successful attempt per partition; the
  driver moves those files, and only those, into the output, so a failed or speculative
  attempt's file is never committed (no row lost, none twice), then writes ``_SUCCESS``;
- the old output of an ``overwrite`` run is removed only at commit, after every task
  succeeded; a run that fails removes its staging directory and leaves the output as it was.

It writes local (or ``file://``) paths, which on a cluster must be a filesystem that the driver
and the executors share (the commit checks that it sees every file a task reported). ``auto``
uses it for such paths without ``partition_by`` and Spark's writer otherwise (HDFS, S3 and
the others go through Hadoop's filesystems and their committers).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from formats.errors import InputError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

    from jobs._settings import Settings

__all__ = ["RESULT_SCHEMA", "ArrowSink", "arrow_sink", "choose_writer"]

# one row per task: what it wrote, and what the run summary observes of its rows
RESULT_SCHEMA = (
    "partition int, attempt int, file string, rows long, scored long, "
    "providers array<string>, workers array<string>"
)
# Spark's parquet codecs that pyarrow writes the same way (Hadoop's lz4 and lzo framings are
# not pyarrow's: Spark's writer keeps those)
_CODECS = {"none": "none", "uncompressed": "none", "snappy": "snappy", "gzip": "gzip",
           "zstd": "zstd", "lz4_raw": "lz4", "brotli": "brotli"}  # fmt: skip
CODEC_CONF = "spark.sql.parquet.compression.codec"
# a row group is written when the buffered batches reach this (Spark's is 128 MB of encoded
# data; this bounds the worker's memory instead, on top of the batch it is scoring)
ROW_GROUP_BYTES = 32 * 2**20


def _local(location: str) -> Path | None:
    if "://" not in location or location.startswith("file://"):
        return Path(location.removeprefix("file://")).absolute()
    return None


def choose_writer(
    setting: str, output: str, partition_by: Sequence[str], codec: str, connect: bool = False
) -> tuple[str, str]:
    """("arrow" or "spark", why): ``output.writer`` resolved for this output. ``arrow`` asked
    for where it cannot write is a usage error (exit 2) before anything runs. On Spark Connect
    the driver that commits is this client, which may not see the executors' files: ``auto``
    leaves that to Spark's writer, ``arrow`` says they share a filesystem (the commit checks)."""
    why_not = ""
    if _local(output) is None:
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
    sink = ArrowSink(settings.job.output, out.mode, _CODECS[codec])
    read = _local(settings.job.input)
    if out.mode == "overwrite" and read is not None and sink.root in (read, *read.parents):
        # Spark's writer refuses this too: the commit would delete the data being scored
        raise UsageError(f"output {settings.job.output!r} is (or holds) the input and "
                         "output.mode is overwrite; write the scores elsewhere")  # fmt: skip
    return sink, why


@dataclass
class ArrowSink:
    """One run's staged write to ``output`` (a local path) in ``mode``: :meth:`task` wraps the
    scoring function mapInArrow runs, :meth:`commit` or :meth:`abort` ends the run."""

    output: str
    mode: str
    codec: str = "snappy"
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created: bool = False  # the output directory is this run's: abort removes it
    schema: pa.Schema | None = None  # the written columns' (set by task())

    @property
    def root(self) -> Path:
        path = _local(self.output)
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
        if root.exists() and self.mode in ("error", "errorifexists"):
            raise UsageError(f"output {self.output!r} exists and output.mode is {self.mode}; "
                             "remove it, or pass --set output.mode=overwrite (or append)")  # fmt: skip
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
        return _WriteTask(score, str(self.staging), self.run, self.codec, schema,
                          tuple(literals.values()), error, tags, dictionary)  # fmt: skip

    def commit(self, results: Sequence[Any]) -> int:
        """Moves the files of the reported attempts into the output (one per partition with
        rows), removes everything else staged and, for ``overwrite``, the old output; writes
        ``_SUCCESS``. Returns the rows written."""
        import pyarrow.parquet as pq

        staging, root = self.staging, self.root
        by_partition = {int(r["partition"]): r for r in results}
        if len(by_partition) != len(results):  # Spark returns one result per partition
            raise RuntimeError(f"{len(results)} task results for {len(by_partition)} partitions")
        files = [staging / r["file"] for r in results if r["file"]]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise InputError(
                f"the driver does not see {len(missing)} file(s) the executors wrote under "
                f"{staging} (first: {missing[0]}); output.writer = arrow needs a filesystem "
                "that the driver and the executors share: use output.writer = spark"
            )
        if self.mode == "overwrite":
            for old in root.iterdir():
                if old.name != "_temporary":
                    shutil.rmtree(old) if old.is_dir() else old.unlink()
        if not files:  # every partition empty: one file with the schema, as Spark's writer
            assert self.schema is not None, "score(..., sink=) sets the schema"
            pq.write_table(self.schema.empty_table(), staging / f"part-00000-{self.run}.parquet")
            files = [staging / f"part-00000-{self.run}.parquet"]
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


@dataclass(frozen=True)
class _WriteTask:
    score: Any  # jobs._udf._ArrowTask: input batches -> scored batches
    staging: str
    run: str
    codec: str
    schema: pa.Schema  # the written columns: the scored batch's, then the literals
    literals: tuple[str, ...]
    error: str | None
    tags: tuple[str, str]
    dictionary: tuple[str, ...]  # the columns written with a dictionary (pyarrow's default)

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from pyspark import TaskContext

        context = TaskContext.get()
        assert context is not None, "runs in a Spark task"
        partition, attempt = context.partitionId(), context.attemptNumber()
        name = f"part-{partition:05d}-{self.run}-t{context.taskAttemptId()}.parquet"
        writer: pq.ParquetWriter | None = None
        buffered: list[pa.RecordBatch] = []
        size = rows = scored = 0
        found: tuple[set[str], set[str]] = (set(), set())
        scored_columns = self.schema.names[: len(self.schema.names) - len(self.literals)]

        def flush() -> None:
            nonlocal writer, buffered, size
            table = pa.Table.from_batches(buffered)
            if writer is None:
                writer = pq.ParquetWriter(f"{self.staging}/{name}", self.schema,
                                          compression=self.codec,
                                          use_dictionary=list(self.dictionary))  # fmt: skip
            writer.write_table(table, row_group_size=table.num_rows)
            buffered, size = [], 0

        try:
            for batch in self.score(batches):
                n = batch.num_rows
                for seen, tag in zip(found, self.tags, strict=True):  # non-null on one row
                    seen.update(batch.column(tag).drop_null().to_pylist())
                # null in the error column: the model scored the row
                scored += batch.column(self.error).null_count if self.error else n
                out = [batch.column(c) for c in scored_columns]
                out += [pa.repeat(pa.scalar(v, pa.string()), n) for v in self.literals]
                buffered.append(pa.RecordBatch.from_arrays(out, schema=self.schema))
                rows, size = rows + n, size + buffered[-1].nbytes
                if size >= ROW_GROUP_BYTES:
                    flush()
            if buffered:
                flush()
        finally:
            if writer is not None:
                writer.close()
        yield pa.RecordBatch.from_pylist(
            [{"partition": partition, "attempt": attempt, "file": name if rows else "",
              "rows": rows, "scored": scored, "providers": sorted(found[0]),
              "workers": sorted(found[1])}],
            schema=pa.schema([("partition", pa.int32()), ("attempt", pa.int32()),
                              ("file", pa.string()), ("rows", pa.int64()),
                              ("scored", pa.int64()), ("providers", pa.list_(pa.string())),
                              ("workers", pa.list_(pa.string()))]),
        )  # fmt: skip

