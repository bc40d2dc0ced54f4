"""Parquet in, Parquet/CSV/JSON lines out: ``--points data.parquet`` and ``--output FILE`` (issue 13).

Reading: ``--points`` names a Parquet file, a directory of them, or a glob (``data/*.parquet``). Files are
read in order (sorted names), a batch of rows at a time out of their row groups (pyarrow's
``iter_batches``), so memory stays flat however large the dataset. Rows are numbered 1, 2, ... across
all the files (that number is a row's ``line`` in JSON output); messages name the file and the row
within it (``part-1.parquet, row 7``).

Writing: :class:`OutputSink` takes the place of the renderer: every chunk becomes a table of the input's
columns (all of them for Parquet input, the variables read for CSV/JSON lines), then the value columns
(the CSV header's names: ``value``; ``d_x``; ``d_x_y``; ``d0``/``c0``), ``check_ok`` and ``check_rel_err``
(with ``--check``), ``certified`` and ``error``. The format follows the extension (``.parquet``/``.pq``,
``.csv``, ``.jsonl``/``.ndjson``). The file is written under a temporary name in the same directory and
renamed over ``FILE`` (``os.replace``, atomic) only when every row has been written; a run that stops
early (a bad row, an I/O error, a lost cluster) removes the temporary file and leaves no ``FILE``.

The same table is what a Dask partition returns (:mod:`gradcli.dask`): :func:`results_table` is the one
place that turns a :class:`~gradcli.commands.Block` into rows of a table.

Library code: no printing; pyarrow and pandas come from the optional extra ``gradcli[dask]``.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .commands import Block, Chunk, Job
from .errors import InputError, IOFault

__all__ = ["EXTRA_HINT", "is_parquet", "parquet_files", "ParquetReader", "Piece", "pieces", "read_table",
           "arrow_chunk", "validated_chunk", "result_names", "results_table", "results_frame", "output_format",
           "OutputSink", "write_part", "BATCH_ROWS"]

#: What to install when pyarrow, pandas or dask are missing.
EXTRA_HINT = "pip install 'gradcli[dask]'"
#: Rows per chunk read from a Parquet file (chunks of tens of thousands of rows, as for CSV).
BATCH_ROWS = 65_536
_SUFFIXES = (".parquet", ".pq", ".parq")
_OUTPUTS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def require(module: str) -> Any:
    """Import ``module`` (pyarrow.parquet, pandas, dask...), or an InputError saying what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise InputError(f"{top} is not installed; Parquet, --output and --dask need it: {EXTRA_HINT}") from None


# ---- which files --------------------------------------------------------------------------------------
def is_parquet(spec: str) -> bool:
    """Whether ``--points SPEC`` is Parquet: a ``.parquet``/``.pq`` name, a directory, or a glob."""
    if spec == "-":
        return False
    if spec.lower().endswith(_SUFFIXES) or os.path.isdir(spec):
        return True
    return glob.has_magic(spec) and not os.path.exists(spec)


def parquet_files(spec: str) -> list[str]:
    """The Parquet files ``spec`` names, in the order their rows are numbered (sorted names)."""
    if os.path.isdir(spec):
        found = sorted(_walk(spec))
        if not found:
            raise InputError(f"--points: the directory '{spec}' holds no .parquet files")
        return found
    if glob.has_magic(spec) and not os.path.exists(spec):
        found = sorted(f for f in glob.glob(spec, recursive=True) if os.path.isfile(f))
        if not found:
            raise InputError(f"--points: no file matches '{spec}'")
        return found
    if not os.path.exists(spec):
        raise InputError(f"--points: cannot read '{spec}': no such file")
    return [spec]


#: A directory given to --points is searched for Parquet files up to this many entries: a dataset's own
#: directory holds far fewer, and --points / must end at once, not walk the whole file system.
MAX_DIR_ENTRIES = 20_000


def _walk(top: str) -> list[str]:
    """The Parquet files below ``top`` (hidden and ``_``-prefixed entries skipped, links not followed)."""
    found: list[str] = []
    seen = 0
    for root, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        seen += len(dirs) + len(files)
        if seen > MAX_DIR_ENTRIES:
            raise InputError(f"--points: the directory '{top}' has more than {MAX_DIR_ENTRIES} entries below it; "
                             "give the Parquet dataset's own directory, a file or a glob")
        found += [os.path.join(root, f) for f in files
                  if f.lower().endswith(_SUFFIXES) and not f.startswith((".", "_"))]
    return found


def _open(path: str) -> Any:
    pq = require("pyarrow.parquet")
    pa = require("pyarrow")
    try:
        return pq.ParquetFile(path)
    except PermissionError as exc:
        raise IOFault(f"--points: cannot read '{path}': {exc.strerror or exc}") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"--points {path}: not a readable Parquet file ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


# ---- one table of rows -> a checked Chunk -------------------------------------------------------------
def validated_chunk(frame: Any, needed: Sequence[str], defaults: dict[str, float], where: Any,
                    lines: Sequence[int | None]) -> Chunk:
    """The needed variables of ``frame`` (a pandas DataFrame) as float64 columns, with ``--at`` defaults
    for the ones it lacks; an InputError naming the first bad row (null, not a number, not finite).

    ``where(i)`` names row ``i`` of the frame (``part-1.parquet, row 7``); ``lines`` are the rows' numbers.
    """
    pd = require("pandas")
    n = len(frame)
    values: dict[str, np.ndarray] = {}
    for name in needed:
        if name not in frame.columns:
            if name in defaults:
                values[name] = np.full(n, float(defaults[name]))
                continue
            raise InputError(f"--points {where(0).split(',')[0]}: no column '{name}', and --at gives no value for it")
        col = frame[name]
        if not (pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype)):
            raise InputError(f"--points {where(0).split(',')[0]}: the column '{name}' holds {col.dtype} values, "
                             "not numbers")
        missing = col.isna().to_numpy()
        if missing.any():
            i = int(np.argmax(missing))
            raise InputError(f"--points {where(i)}: the value of '{name}' is missing (null or NaN)")
        arr = np.ascontiguousarray(col.to_numpy(dtype=np.float64))
        finite = np.isfinite(arr)
        if not finite.all():
            i = int(np.argmin(finite))
            raise InputError(f"--points {where(i)}: the value of '{name}' is not finite ({arr[i]})")
        values[name] = arr
    return Chunk(values, n, tuple(lines))


# ---- the single-process reader ----------------------------------------------------------------------------
class ParquetReader:
    """Chunks of rows from Parquet files (read a batch at a time), like :class:`gradcli.points.PointsReader`.

    Args:
        spec: a file, a directory of ``.parquet`` files, or a glob.
        needed: the variables every row must have a value for.
        defaults: float values for variables the files may lack (from ``--at``).
        keep_columns: also read every other column (to write them to ``--output``).

    ``bytes_read``/``total`` drive a progress bar; :meth:`where` names a row by its number.
    """

    def __init__(self, spec: str, needed: Sequence[str], defaults: dict[str, Any], *,
                 keep_columns: bool = False, batch_rows: int = BATCH_ROWS) -> None:
        self.files = parquet_files(spec)
        self.needed, self.defaults = list(needed), {k: float(v) for k, v in defaults.items()}
        self.keep_columns, self.batch_rows = keep_columns, batch_rows
        self.total = sum(os.path.getsize(f) for f in self.files) or None
        self.bytes_read = 0
        self._starts: list[tuple[int, str]] = []  # (first row number, file) per file begun
        self.frame: Any = None  # the last chunk's input columns (a pyarrow Table) when keep_columns

    def where(self, line: int | None) -> str:
        """``part-1.parquet, row 7`` for row number ``line`` (counted across files)."""
        if line is None:
            return "?"
        start, path = next(((s, p) for s, p in reversed(self._starts) if s <= line), (1, self.files[0]))
        return f"{path}, row {line - start + 1}"

    def __iter__(self) -> Iterator[Chunk]:
        pa = require("pyarrow")
        row0 = 0
        for path in self.files:
            pf = _open(path)
            self._starts.append((row0 + 1, path))
            names = pf.schema_arrow.names
            columns = None if self.keep_columns else [c for c in self.needed if c in names]
            size = os.path.getsize(path)
            total_rows = max(pf.metadata.num_rows, 1)
            done = 0
            try:
                batches = pf.iter_batches(batch_size=self.batch_rows, columns=columns)
                for batch in batches:
                    frame = pa.Table.from_batches([batch])
                    n = frame.num_rows
                    first = row0 + done

                    def where(i: int, path: str = path, done: int = done) -> str:
                        return f"{path}, row {done + i + 1}"

                    chunk = arrow_chunk(frame, self.needed, self.defaults, where, range(first + 1, first + n + 1))
                    self.frame = frame if self.keep_columns else None
                    done += n
                    self.bytes_read += int(size * n / total_rows)
                    yield chunk
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InputError(f"--points {path}: cannot read it ({_first_line(exc)})") from None
            row0 += done


# ---- the same reading, as pieces for Dask partitions ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Piece:
    """Rows ``first_row`` to ``first_row + rows`` of one file: one Dask partition. Plain data (sent to
    the workers as is)."""

    path: str
    row_groups: tuple[int, ...]  # the row groups that hold these rows
    skip: int  # rows of the first of them before ``first_row``
    first_row: int  # counted within the file from 0
    rows: int
    columns: tuple[str, ...] | None  # None: every column
    first_line: int = 0  # rows before this piece, counted across the files (a row's ``line`` is one more)


#: Rows per Dask partition: a multiple of BATCH_ROWS, so that a partition is cut into the very chunks one
#: process reads (``iter_batches`` cuts each file every BATCH_ROWS rows), and the rows come out identical.
PARTITION_ROWS = 16 * BATCH_ROWS


def pieces(spec: str, needed: Sequence[str], *, keep_columns: bool, partition_rows: int = PARTITION_ROWS
           ) -> list[Piece]:
    """Each file cut every ``partition_rows`` rows (footers only are read here)."""
    if partition_rows % BATCH_ROWS:
        raise ValueError("partition_rows must be a multiple of BATCH_ROWS")
    out: list[Piece] = []
    line = 0
    for path in parquet_files(spec):
        pf = _open(path)
        names = pf.schema_arrow.names
        columns = None if keep_columns else tuple(c for c in needed if c in names)
        meta = pf.metadata
        starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        total = int(starts[-1])
        for first in range(0, max(total, 1), partition_rows):
            stop = min(first + partition_rows, total)
            groups = tuple(int(g) for g in range(meta.num_row_groups) if starts[g] < stop and starts[g + 1] > first)
            skip = first - int(starts[groups[0]]) if groups else 0
            out.append(Piece(path, groups, skip, first, stop - first, columns, line + first))
        line += total
    return out


def read_table(piece: Piece) -> Any:
    """A piece's rows as a pyarrow Table (its columns only: no pandas, no hidden columns)."""
    pa = require("pyarrow")
    pf = _open(piece.path)
    columns = list(piece.columns) if piece.columns is not None else None
    try:
        if piece.row_groups:
            return pf.read_row_groups(list(piece.row_groups), columns=columns).slice(piece.skip, piece.rows)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"--points {piece.path}: cannot read it ({_first_line(exc)})") from None
    table = pf.schema_arrow.empty_table()
    return table.select(columns) if columns is not None else table


def arrow_chunk(table: Any, needed: Sequence[str], defaults: dict[str, float], where: Any,
                lines: Sequence[int | None]) -> Chunk:
    """:func:`validated_chunk` of a pyarrow Table, without pandas: numeric columns with no null and no
    non-finite value go straight to float64 arrays; anything else takes :func:`validated_chunk`'s path, so
    the values and the messages are the same."""
    pa = require("pyarrow")
    n = table.num_rows
    names = set(table.column_names)
    values: dict[str, np.ndarray] = {}
    for name in needed:
        if name not in names:
            if name not in defaults:
                break
            values[name] = np.full(n, float(defaults[name]))
            continue
        col = table.column(name)
        if col.null_count or not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            break
        arr = np.ascontiguousarray(col.to_numpy(), dtype=np.float64)
        if not np.isfinite(arr).all():
            break
        values[name] = arr
    else:
        return Chunk(values, n, tuple(lines))
    return validated_chunk(table.to_pandas(), needed, defaults, where, lines)


# ---- results as a table ----------------------------------------------------------------------------------
def result_names(job: Job) -> list[str]:
    """The value columns (the CSV header's names), then check_ok, check_rel_err, certified, error."""
    return job.command.column_names(job) + (["check_ok", "check_rel_err"] if job.check else []) + ["certified", "error"]


def results_table(block: Block, inputs: Any = None) -> Any:
    """One chunk's results as a pyarrow Table: ``inputs`` (a pyarrow Table of the input's columns; by
    default the variables read) then :func:`result_names`. A row outside the domain has nan values and its
    message in ``error``; ``check_ok`` is null where the check did not run. Built from the block's arrays
    with no per-row Python (a message per row outside the domain only)."""
    pa = require("pyarrow")
    job, n = block.job, block.chunk.size
    if inputs is None:
        inputs = pa.table({k: np.asarray(v, dtype=np.float64) for k, v in block.chunk.values.items()})
    names = result_names(job)
    clash = [c for c in names if c in inputs.column_names]
    if clash:
        raise InputError(f"--output: the input already has a column named '{clash[0]}' (a result column)")
    columns: dict[str, Any] = {c: inputs.column(c) for c in inputs.column_names}
    flat = np.asarray(block.values, dtype=np.float64).reshape(n, -1)
    if job.command.series:
        flat = np.concatenate([flat, np.asarray(block.extra["coefficients"], dtype=np.float64).reshape(n, -1)],
                              axis=1)
    for j, name in enumerate(names[: flat.shape[1]]):
        columns[name] = pa.array(np.ascontiguousarray(flat[:, j]))
    if job.check:
        ok = np.ones(n, dtype=bool)
        known = np.ones(n, dtype=bool)
        worst = np.full(n, np.nan)
        for batch in block.checks or []:
            status = batch.status.copy()
            errs = batch.rel_err.copy()
            for i, c in batch.single.items():
                status[i] = -1 if c is None or c.ok is None else int(c.ok)
                errs[i] = np.nan if c is None or c.rel_err is None else c.rel_err
            ok &= status != 0
            known &= status >= 0
            with np.errstate(invalid="ignore"):
                worst = np.fmax(worst, errs)
        # any miss: False; all agreed: True; null where the check did not run
        columns["check_ok"] = pa.array(np.where(ok, known, False), mask=block.bad | ~(known | ~ok))
        columns["check_rel_err"] = pa.array(np.where(block.bad, np.nan, worst))
    certified = np.ones(n, dtype=bool)
    certified[block.uncertified] = False
    columns["certified"] = pa.array(certified, mask=np.asarray(block.bad, dtype=bool))
    bad = np.flatnonzero(block.bad)
    if bad.size:
        errors: list[str | None] = [None] * n
        for i in bad:
            exc = block.error(int(i))
            errors[i] = exc.message if exc is not None else "the result is not finite"
        columns["error"] = pa.array(errors, type=pa.string())
    else:
        columns["error"] = pa.nulls(n, pa.string())
    return pa.table(columns)


def results_frame(block: Block, inputs: Any = None) -> Any:
    """:func:`results_table` as a pandas DataFrame (``inputs`` a pandas DataFrame, kept as it is);
    ``check_ok`` and ``certified`` are nullable booleans, ``error`` a string column."""
    pd = require("pandas")
    table = results_table(block, require("pyarrow").table({}))
    if inputs is None:
        inputs = pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in block.chunk.values.items()})
    out = inputs.reset_index(drop=True).copy() if len(inputs.columns) else pd.DataFrame(index=range(block.chunk.size))
    names = result_names(block.job)
    clash = [c for c in names if c in out.columns]
    if clash:
        raise InputError(f"--output: the input already has a column named '{clash[0]}' (a result column)")
    for name in names:
        out[name] = table.column(name).to_pandas(types_mapper=_pandas_type)
    return out


def _pandas_type(t: Any) -> Any:
    """Arrow's bool and string as pandas' nullable types (a null stays a null, not None in an object column)."""
    pa = require("pyarrow")
    pd = require("pandas")
    return {pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype()}.get(t)


# ---- --output: one file, written atomically ---------------------------------------------------------------
def output_format(path: str) -> str:
    """``parquet``, ``csv`` or ``jsonl`` from ``path``'s extension, ``dataset`` for a name ending in ``/``
    (a directory of Parquet files); an InputError otherwise."""
    if path.endswith(("/", os.sep)):
        return "dataset"
    ext = os.path.splitext(path)[1].lower()
    if ext not in _OUTPUTS:
        raise InputError(f"--output: '{path}' must end in .parquet, .csv or .jsonl (the format follows the name), "
                         "or in / (a new directory of Parquet files)")
    return _OUTPUTS[ext]


class OutputSink:
    """Writes result tables to ``path`` under a temporary name; :meth:`close` renames it into place,
    :meth:`abort` removes it. Stands where the CLI's renderer stands (``block``, ``close``).

    A ``path`` ending in ``/`` is a dataset: a new directory of Parquet files (``part-00000.parquet``, ...),
    written as a temporary directory beside it and renamed when complete; Dask workers write their pieces
    into it themselves (:meth:`part_path`, :func:`write_part`), so no row passes through the client."""

    def __init__(self, path: str, *, inputs: Any = None) -> None:
        self.path = path
        self.fmt = output_format(path)
        require("pyarrow")
        require("pandas")
        self.inputs = inputs  # an object with ``frame``: the input columns of the last chunk read
        self.rows = 0
        self._file: Any = None
        self._writer: Any = None
        self._schema: Any = None
        self.before_streaming = lambda: None  # the renderer's hook (the CLI's progress bar)
        target = path.rstrip("/" + os.sep) or path
        directory = os.path.dirname(os.path.abspath(target))
        if self.fmt == "dataset" and os.path.lexists(target):
            raise InputError(f"--output: '{path}' already exists (a dataset directory is written whole, "
                             "never into another: give a new name)")
        if self.fmt != "dataset" and os.path.isdir(path):
            raise InputError(f"--output: '{path}' is a directory")
        umask = os.umask(0)
        os.umask(umask)
        try:
            if self.fmt == "dataset":
                self.tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
                os.chmod(self.tmp, 0o777 & ~umask)  # mkdtemp's 0700 would outlive the rename
                return
            fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
        except FileNotFoundError:
            raise InputError(f"--output: the directory '{directory}' does not exist") from None
        except OSError as exc:
            raise IOFault(f"--output: cannot write in '{directory}': {exc.strerror or exc}") from None
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename: an ordinary file's mode
        self._file = os.fdopen(fd, "wb")

    def part_path(self, i: int) -> str:
        """A dataset's ``i``-th file, inside the temporary directory (renamed with it by :meth:`close`)."""
        return os.path.join(self.tmp, f"part-{i:05d}.parquet")

    def block(self, block: Block) -> None:
        inputs = getattr(self.inputs, "frame", None)
        self.table(results_table(block, inputs if inputs is not None and len(inputs) == block.chunk.size else None))

    def table(self, table: Any) -> None:
        """Append one result table (a pyarrow Table, :func:`results_table`)."""
        if self.fmt in ("parquet", "dataset"):
            self._parquet(table)
        else:
            frame = table.to_pandas(types_mapper=_pandas_type)
            if self.fmt == "csv":
                frame.to_csv(self._file, header=self.rows == 0, index=False, lineterminator="\n", na_rep="",
                             float_format=None, encoding="utf-8")
            else:
                self._jsonl(frame)
        self.rows += table.num_rows

    def _parquet(self, table: Any) -> None:
        pq = require("pyarrow.parquet")
        if self._writer is None:
            if self._file is None:  # a dataset written here: one file
                self._file = open(self.part_path(0), "wb")  # noqa: SIM115 - closed by close() or abort()
            self._schema = table.schema.remove_metadata()
            self._writer = pq.ParquetWriter(self._file, self._schema, use_dictionary=_dictionary_columns(self._schema))
        self._writer.write_table(table.replace_schema_metadata(None).cast(self._schema))

    def _jsonl(self, frame: Any) -> None:
        lines = []
        for rec in frame.to_dict("records"):
            lines.append(json.dumps({k: _json_value(v) for k, v in rec.items()}, allow_nan=False))
        if lines:
            self._file.write(("\n".join(lines) + "\n").encode())

    def close(self) -> None:
        """Finish the file and rename it into place."""
        if self.fmt == "dataset":
            self._close_dataset()
            return
        if self._file is None:
            return
        if self.fmt == "parquet" and self._writer is None:  # no rows: an empty table of the known columns
            self._parquet_empty()
        if self._writer is not None:
            self._writer.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self.tmp, self.path)

    def _parquet_empty(self) -> None:
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        self._writer = pq.ParquetWriter(self._file, pa.schema([]))

    def _close_dataset(self) -> None:
        if self.tmp is None:
            return
        if self._writer is not None:
            self._writer.close()
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        try:
            os.rename(self.tmp, self.path.rstrip("/" + os.sep))  # fails rather than replace a directory
        except OSError as exc:
            raise IOFault(f"--output: cannot rename the finished dataset to '{self.path}': "
                          f"{exc.strerror or exc}") from None
        self.tmp = None

    def abort(self) -> None:
        """Remove the temporary file (the run failed: no ``--output`` file is left behind)."""
        if self._file is not None:
            try:
                if self._writer is not None:
                    self._writer.close()
                self._file.close()
            except OSError:
                pass
            self._file = None
        if self.fmt == "dataset":
            if self.tmp is not None:
                for _ in range(3):  # again if a late writer added a file while the tree was being removed
                    shutil.rmtree(self.tmp, ignore_errors=True)
                    if not os.path.lexists(self.tmp):
                        break
                self.tmp = None
            return
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


def _dictionary_columns(schema: Any) -> list[str]:
    """The columns worth Parquet's dictionary pages: all but floats. For a float column pyarrow builds a
    dictionary, finds it too large and falls back, which doubles the time of a write."""
    pa = require("pyarrow")
    return [f.name for f in schema if not pa.types.is_floating(f.type)]


def write_part(table: Any, path: str) -> None:
    """One file of a dataset (``--output DIR/``), written by the worker that computed it: under a temporary
    name, then renamed, so a piece rerun elsewhere (a worker lost) replaces it whole."""
    pq = require("pyarrow.parquet")
    tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    table = table.replace_schema_metadata(None)
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f, use_dictionary=_dictionary_columns(table.schema))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise IOFault(f"--output: cannot write '{path}': {exc.strerror or exc}") from None


def _json_value(v: Any) -> Any:
    import pandas as pd

    if v is None or v is pd.NA:
        return None
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, (str, int)):
        return v
    return str(v)
