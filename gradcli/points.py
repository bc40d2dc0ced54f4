"""``--points``: rows of points from a CSV file or JSON lines, read in chunks as they arrive.

The reader turns a byte stream (a file, or stdin) into :class:`~gradcli.commands.Chunk` records, one
chunk at a time, so that evaluation and output stream too and memory stays flat however many rows
arrive. Library code: no printing; every problem with the input is an :class:`InputError` (exit 2)
naming the line.

Formats
    * **CSV**: the first non-blank line is a header of comma-separated column names; then one point a
      line. Cells are numbers as Python's ``float`` reads them (``1``, ``-2``, ``2.5``, ``1e-3``,
      ``+.5``); a cell that is not a plain number may be a constant expression in EXPR's syntax
      (``pi/4``, ``sqrt(2)``; safely parsed, never executed; quote it if it contains a comma). Double
      quotes follow CSV rules; a record must fit on one line. Spaces around cells and ``\\r\\n`` line ends
      are fine.
    * **JSON lines**: one JSON object a line, ``{"x": 1, "y": 2.5}``; the values used must be JSON
      numbers (not strings, booleans or null).
    * Detection: a file named ``*.csv`` is CSV, ``*.jsonl``, ``*.ndjson`` or ``*.json`` is JSON lines;
      otherwise (and for stdin) the content decides: JSON lines when the first non-blank character is
      ``{``, CSV otherwise.
    * Blank lines are skipped (they still count for line numbers). A UTF-8 byte-order mark is ignored.

Which values
    * Only the variables the expression needs are read; other columns or keys are ignored (they may hold
      anything: ids, labels).
    * ``--at`` supplies a value for a variable the file lacks. When both give a variable, the file wins
      for that row: ``--at`` is the default (in JSON lines, for the rows that lack the key).
    * A needed variable that is in neither the header nor ``--at`` is an error on the header's line (CSV)
      or on the first row without it (JSON lines).

Errors (exit 2, one line naming the line number; every earlier row has been yielded already): an empty
input, a header cell that is empty, duplicated or a number (a missing header row), a row with a different
number of cells than the header, an empty or non-numeric cell, NaN or infinite values, invalid JSON, a
JSON line that is not an object, and a JSON value that is not a number. A header with no rows is zero
points, not an error.

Chunks start small (so the first results appear at once, e.g. for ``| head -n 5``) and grow to about
:data:`MAX_CHUNK_BYTES` of input; a chunk also ends whenever the input has nothing more ready (a slow
producer on stdin), so output never waits for input that has not been written yet.
"""

from __future__ import annotations

import csv
import json
import os
import select
import stat
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

import mpmath
import numpy as np

from . import ops
from .commands import Chunk
from .errors import InputError

__all__ = ["PointsReader", "FIRST_CHUNK_BYTES", "MAX_CHUNK_BYTES", "MAX_LINE_BYTES", "MAX_COLUMNS"]

#: The first chunk reads at most this many bytes (about a hundred rows): output starts at once.
FIRST_CHUNK_BYTES = 4096
#: Chunks grow fourfold up to this many bytes of input (some 50,000 rows of two numbers).
MAX_CHUNK_BYTES = 1 << 20
#: A longer line (header or row) is an error naming it (exit 2): ``--points /dev/zero`` ends at once.
MAX_LINE_BYTES = 1 << 20
#: A header with more columns is an error (exit 2).
MAX_COLUMNS = 10_000

_JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
_BOM = b"\xef\xbb\xbf"


class PointsReader:
    """Iterate over the points in ``stream`` as :class:`~gradcli.commands.Chunk` records.

    Args:
        stream: a binary stream (an open file, or stdin's buffer).
        needed: the variables every row must have a value for.
        defaults: backend scalars for variables the file may lack (from ``--at``).
        bk: the backend (float64, or mpmath with ``--digits``: cells are then read in full precision).
        name: the file name (``-`` for stdin), for the format's detection and for messages.

    ``bytes_read`` and ``total`` (the size of a regular file, else None) drive a progress bar.

    >>> import io
    >>> from gradcli import ops
    >>> reader = PointsReader(io.BytesIO(b"x,y\\n1,2\\n3,4\\n"), ["x"], {}, ops.F64)
    >>> [(c.values["x"].tolist(), c.lines) for c in reader]
    [([1.0, 3.0], (2, 3))]
    """

    def __init__(self, stream: BinaryIO, needed: Sequence[str], defaults: dict[str, Any], bk: ops.Backend,
                 *, name: str = "-") -> None:
        self.stream, self.bk, self.name = stream, bk, name
        self.needed = list(needed)
        self.defaults = dict(defaults)
        self.bytes_read = 0
        self.total = _regular_size(stream)
        lower = name.lower()
        self.fmt: str | None = "csv" if lower.endswith(".csv") else "jsonl" if lower.endswith(_JSON_SUFFIXES) else None
        self.where = "stdin" if name == "-" else name

    def error(self, line: int, message: str) -> InputError:
        """The one-line error for input line ``line``."""
        return InputError(f"--points {self.where}, line {line}: {message}")

    # ---- bytes to lines -------------------------------------------------------------------------------
    def _blocks(self) -> Iterator[bytes]:
        """Blocks of whole lines (the last may lack its newline), small at first, then growing.

        Linear in the input: bytes are appended to one buffer and only new bytes are searched for a
        newline, so a long line costs its length, not its length squared. A line longer than
        :data:`MAX_LINE_BYTES` stops the reading with an error naming it (after every earlier block).
        """
        read = getattr(self.stream, "read1", None) or self.stream.read
        target, first = FIRST_CHUNK_BYTES, True
        pending = bytearray()
        end = 0  # just past the last newline in pending (0: none yet)
        lines = 0  # newlines in the blocks yielded so far

        def take(data: bytes) -> None:
            nonlocal end
            nl = data.rfind(b"\n")
            if nl >= 0:
                end = len(pending) + nl + 1
            pending.extend(data)
            self.bytes_read += len(data)

        def emit(block: bytes) -> Iterator[bytes]:
            """Yield ``block``, or its lines before the first one beyond the limit, then raise."""
            nonlocal lines
            long = _long_line(block)
            if long is not None:
                good = block[:long]
                if good:
                    lines += good.count(b"\n")
                    yield good
                raise self.error(lines + 1, f"the line is longer than {MAX_LINE_BYTES >> 20} MiB (the limit)")
            lines += block.count(b"\n")
            yield block

        while True:
            data = read(target)  # waits for some input, returns what is there
            eof = not data
            while data and len(pending) + len(data) < target and _ready(self.stream):
                take(data)
                data = read(target - len(pending))
                eof = not data
            take(data)
            if len(pending) - end > MAX_LINE_BYTES:  # a line with no end in sight: stop reading it
                yield from emit(bytes(pending))
            cut = len(pending) if eof else end
            if cut and first:  # a whole first line: a byte-order mark, if any, is all there
                first = False
                if pending.startswith(_BOM):
                    del pending[: len(_BOM)]
                    cut, end = cut - len(_BOM), max(end - len(_BOM), 0)
            if eof:
                if pending:
                    yield from emit(bytes(pending))
                return
            if cut:
                block = bytes(pending[:cut])
                del pending[:cut]
                end = 0
                yield from emit(block)
                target = min(target * 4, MAX_CHUNK_BYTES)

    def __iter__(self) -> Iterator[Chunk]:
        parser: _Parser | None = None
        line0 = 0  # lines before the current block
        for block in self._blocks():
            try:
                text = block.decode("utf-8")
                bad_utf8 = None
            except UnicodeDecodeError as exc:
                cut = block.rfind(b"\n", 0, exc.start) + 1
                text, bad_utf8 = block[:cut].decode("utf-8"), line0 + block.count(b"\n", 0, cut) + 1
            if parser is None and text.strip():
                start = text.lstrip()[0]
                fmt = self.fmt or ("jsonl" if start == "{" else "csv")
                parser = _Csv(self) if fmt == "csv" else _JsonLines(self)
            if parser is not None:
                yield from parser.feed(text, block if bad_utf8 is None else block[: len(text.encode())], line0)
            if bad_utf8 is not None:
                raise self.error(bad_utf8, "not UTF-8 text")
            line0 += text.count("\n")
        if parser is None:
            raise self.error(1, "the input is empty: expected a CSV header row of variable names "
                                            "(x,y) or JSON lines ({\"x\": 1, \"y\": 2})")

    # ---- shared by the parsers --------------------------------------------------------------------------
    def chunk(self, columns: dict[str, np.ndarray], lines: Sequence[int]) -> Chunk:
        """A chunk from the file's columns plus ``--at`` defaults for the needed variables it lacks."""
        n = len(lines)
        values: dict[str, np.ndarray] = {}
        for name in self.needed:
            if name in columns:
                values[name] = columns[name]
            else:
                values[name] = _full(n, self.defaults[name], self.bk)
        return Chunk(values, n, tuple(lines))

    def number(self, text: str) -> Any:
        """One cell's value (a backend scalar); ValueError if it is neither a number nor a constant."""
        if self.bk.is_mp:
            try:
                return mpmath.mpf(text)
            except (ValueError, TypeError):
                pass
        else:
            try:
                return float(text)
            except ValueError:
                pass
        from .parse import parse_constant

        try:
            expr = parse_constant(text, what="a points cell")
        except InputError:
            raise ValueError(text) from None
        return self.bk.scalar(expr)

    def finite(self, value: Any) -> bool:
        return bool(mpmath.isfinite(value)) if self.bk.is_mp else bool(np.isfinite(value))


class _Parser:
    """A format: turns decoded blocks of whole lines into chunks."""

    def __init__(self, reader: PointsReader) -> None:
        self.r = reader

    def feed(self, text: str, raw: bytes, line0: int) -> Iterator[Chunk]:  # pragma: no cover - abstract
        raise NotImplementedError


def _show(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(cell: str) -> str:
    return repr(cell if len(cell) <= 40 else cell[:37] + "...")


class _Csv(_Parser):
    """CSV with a header row: a vectorised fast path, and a line-by-line path that finds the bad line."""

    def __init__(self, reader: PointsReader) -> None:
        super().__init__(reader)
        self.header: list[str] | None = None
        self.cols: dict[str, int] = {}  # needed variable -> its column in the file
        self.sep: str | None = ","  # "," (CSV), "\t" (TSV) or None (columns separated by whitespace)

    def split(self, line: str) -> list[str]:
        """One line's cells (CSV quoting rules with ',' and tabs when the line has a double quote)."""
        if self.sep is None:
            return line.split()
        if '"' in line:
            return next(csv.reader([line], delimiter=self.sep))
        return line.split(self.sep)

    def _read_header(self, line: str, lineno: int) -> bool:
        """Read the header row; False when the input has none (one column of numbers, EXPR of one
        variable), so that this line is the first point."""
        r = self.r
        self.sep = "\t" if "\t" in line else "," if "," in line else None if len(line.split()) > 1 else ","
        cells = [c.strip() for c in self.split(line)]
        if len(cells) > MAX_COLUMNS:
            raise r.error(lineno, f"the header has {len(cells)} columns (at most {MAX_COLUMNS})")
        for c in cells:
            if not c:
                raise r.error(lineno, "the CSV header has an empty column name (expected variable names: x,y)")
            try:
                float(c)
            except ValueError:
                pass
            else:
                only = self._only_variable()
                if len(cells) == 1 and only is not None:  # a bare column of numbers: the only variable's
                    self.header, self.cols = [only], {only: 0}
                    return False
                raise r.error(lineno, f"the CSV header must name the columns (x,y), but it holds the number {c}: "
                                      "is the header row missing? (a single column without one works when EXPR "
                                      "has one variable)")
        seen: set[str] = set()
        for c in cells:
            if c in seen:
                raise r.error(lineno, f"the CSV header names the column '{_show(c)}' twice")
            seen.add(c)
        missing = [v for v in r.needed if v not in seen and v not in r.defaults]
        if missing:
            names = ", ".join(f"'{m}'" for m in missing)
            shown = _show(",".join(cells), 80)
            raise r.error(lineno, f"the CSV header ({shown}) has no column for {names}, "
                                  "and --at gives no value for it")
        self.header = cells
        position = {c: j for j, c in enumerate(cells)}
        self.cols = {v: position[v] for v in r.needed if v in position}
        return True

    def _only_variable(self) -> str | None:
        """The variable a headerless column holds: the only one needed, or the only one --at lacks."""
        needed = self.r.needed
        lacking = [v for v in needed if v not in self.r.defaults]
        if len(needed) == 1:
            return needed[0]
        return lacking[0] if len(lacking) == 1 else None

    def feed(self, text: str, raw: bytes, line0: int) -> Iterator[Chunk]:
        if self.header is None:
            pos, lineno = 0, line0
            while pos < len(text):
                end = text.find("\n", pos)
                end = len(text) if end < 0 else end
                lineno += 1
                line = text[pos:end].rstrip("\r")
                start, pos = pos, end + 1
                if line.strip():
                    if not self._read_header(line, lineno):
                        pos, lineno = start, lineno - 1  # no header: this line is data
                    break
            else:
                return
            raw = raw[len(text[:pos].encode()):]
            text, line0 = text[pos:], lineno
        if not text:
            return
        fast = None if self.r.bk.is_mp else self._fast(text, raw)
        if fast is not None:
            columns, n = fast
            yield self.r.chunk(columns, range(line0 + 1, line0 + n + 1))
            return
        yield from self._slow(text, line0)

    def _fast(self, text: str, raw: bytes) -> tuple[dict[str, np.ndarray], int] | None:
        """Every line well-formed and every cell a finite float: the whole block through numpy at once.
        None sends the block to the line-by-line path (which also finds the first bad line)."""
        k = len(self.header or ())
        if b'"' in raw:
            return None
        if self.sep != ",":  # TSV or whitespace: rewritten as CSV when that is exact
            text = self._as_csv(text, k)
            if text is None:
                return None
            raw = text.encode()
        b = np.frombuffer(raw, dtype=np.uint8)
        newlines = np.flatnonzero(b == 10)
        ends = newlines if raw.endswith(b"\n") else np.append(newlines, len(raw))
        n = len(ends)
        starts = np.concatenate(([0], ends[:-1] + 1))
        lengths = ends - starts
        if n == 0 or (lengths == 0).any() or ((lengths == 1) & (b[np.minimum(starts, len(b) - 1)] == 13)).any():
            return None  # blank lines: the slow path skips them and keeps line numbers right
        commas = np.flatnonzero(b == 44)
        per_line = np.bincount(np.searchsorted(ends, commas), minlength=n)
        if per_line.shape[0] != n or (per_line != k - 1).any():
            return None
        flat = _floats(text.replace("\n", ","), n * k)
        if flat is not None:
            table = flat.reshape(n, k)
            columns = {v: np.ascontiguousarray(table[:, j]) for v, j in self.cols.items()}
        else:  # other columns hold text (ids, labels): read the needed ones only
            cells = text.replace("\n", ",").split(",")
            columns = {}
            for v, j in self.cols.items():
                col = _floats(",".join(cells[j: n * k: k]), n)
                if col is None:
                    return None
                columns[v] = col
        for col in columns.values():
            if not np.isfinite(col).all():
                return None
        return columns, n

    def _as_csv(self, text: str, k: int) -> str | None:
        """TSV or whitespace-separated text as CSV, or None (the line-by-line path then looks)."""
        if self.sep == "\t":
            return None if "," in text else text.replace("\t", ",")
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        rows = [line.split() for line in lines]
        if any(len(row) != k for row in rows):
            return None
        return "\n".join(",".join(row) for row in rows) + ("\n" if text.endswith("\n") else "")

    def _slow(self, text: str, line0: int) -> Iterator[Chunk]:
        r, k = self.r, len(self.header or ())
        columns: dict[str, list[Any]] = {v: [] for v in self.cols}
        lines: list[int] = []
        failure: InputError | None = None
        for offset, line in enumerate(text.split("\n"), start=1):
            line = line.rstrip("\r")
            if not line.strip():
                continue
            lineno = line0 + offset
            cells = self.split(line)
            if len(cells) != k:
                failure = r.error(lineno, f"this row has {len(cells)} cells but the header has {k} "
                                          f"({_show(','.join(self.header or ()), 80)})")
                break
            row: dict[str, Any] = {}
            for v, j in self.cols.items():
                cell = cells[j].strip()
                if not cell:
                    failure = r.error(lineno, f"the cell for '{v}' is empty")
                    break
                try:
                    value = r.number(cell)
                except ValueError:
                    failure = r.error(lineno, f"the cell for '{v}' is not a number: {_describe(cell)}")
                    break
                if not r.finite(value):
                    failure = r.error(lineno, f"the value of '{v}' is not finite ({cell})")
                    break
                row[v] = value
            if failure is not None:
                break
            for v, value in row.items():
                columns[v].append(value)
            lines.append(lineno)
        if lines:
            yield r.chunk({v: _array(c, r.bk) for v, c in columns.items()}, lines)
        if failure is not None:
            raise failure


class _JsonLines(_Parser):
    """One JSON object a line: one ``json.loads`` per block when it is well-formed, else line by line."""

    def feed(self, text: str, raw: bytes, line0: int) -> Iterator[Chunk]:
        r = self.r
        numbered = [(line0 + i, line) for i, line in enumerate(text.split("\n"), start=1) if line.strip()]
        if not numbered:
            return
        if not r.bk.is_mp:
            fast = self._fast(numbered)
            if fast is not None:
                yield r.chunk(fast, [n for n, _ in numbered])
                return
        columns: dict[str, list[Any]] = {v: [] for v in r.needed}
        lines: list[int] = []
        failure: InputError | None = None
        for lineno, line in numbered:
            try:
                obj = json.loads(line, **self._number_hooks())
            except ValueError as exc:  # json.JSONDecodeError, or a number beyond float's range
                failure = r.error(lineno, f"invalid JSON: {getattr(exc, 'msg', exc)}")
                break
            row = self._row(obj, lineno)
            if isinstance(row, InputError):
                failure = row
                break
            for v, value in row.items():
                columns[v].append(value)
            lines.append(lineno)
        if lines:
            yield r.chunk({v: _array(c, r.bk) for v, c in columns.items() if len(c) == len(lines)}, lines)
        if failure is not None:
            raise failure

    def _number_hooks(self) -> dict[str, Any]:
        if self.r.bk.is_mp:  # decimal text read in full precision, not rounded to float first
            return {"parse_float": mpmath.mpf, "parse_int": mpmath.mpf}
        return {}

    def _fast(self, numbered: list[tuple[int, str]]) -> dict[str, np.ndarray] | None:
        r = self.r
        try:
            objs = json.loads("[" + ",".join(line for _, line in numbered) + "]")
        except ValueError:
            return None
        if len(objs) != len(numbered) or not all(type(o) is dict for o in objs):
            return None
        columns: dict[str, np.ndarray] = {}
        for v in r.needed:
            missing = object()
            default = r.defaults.get(v, missing)
            col = [o.get(v, default) for o in objs]
            if not all(type(x) is float or type(x) is int for x in col):
                return None
            try:
                arr = np.array(col, dtype=np.float64)
            except OverflowError:
                return None
            if not np.isfinite(arr).all():
                return None
            columns[v] = arr
        return columns

    def _row(self, obj: Any, lineno: int) -> dict[str, Any] | InputError:
        r = self.r
        if not isinstance(obj, dict):
            kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(obj), "a number")
            return r.error(lineno, f"expected a JSON object like {{\"x\": 1}}, got {kind}")
        row: dict[str, Any] = {}
        for v in r.needed:
            if v not in obj:
                if v in r.defaults:
                    row[v] = r.defaults[v]
                    continue
                return r.error(lineno, f"no value for '{v}' (and --at gives none)")
            value = obj[v]
            if isinstance(value, bool) or not isinstance(value, (int, float, mpmath.mpf)):
                return r.error(lineno, f"the value of '{v}' must be a number, got {json.dumps(value)[:40]}")
            try:
                value = value if r.bk.is_mp else float(value)
            except OverflowError:
                return r.error(lineno, f"the value of '{v}' is not finite (beyond float64's range)")
            if not r.finite(value):
                return r.error(lineno, f"the value of '{v}' is not finite ({value})")
            row[v] = value
        return row


# ---- helpers ----------------------------------------------------------------------------------------
def _floats(text: str, count: int) -> np.ndarray | None:
    """``count`` comma-separated floats parsed by numpy's C parser, or None if the text is not exactly
    that (the caller then looks line by line)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy < 2 warns (instead of raising) on unparsed text
        try:
            out = np.fromstring(text, dtype=np.float64, sep=",")
        except ValueError:
            return None
    return out if out.shape[0] == count else None


def _array(values: list[Any], bk: ops.Backend) -> np.ndarray:
    if bk.is_mp:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    return np.array(values, dtype=np.float64)


def _full(n: int, value: Any, bk: ops.Backend) -> np.ndarray:
    if bk.is_mp:
        out = np.empty(n, dtype=object)
        out[:] = [value] * n
        return out
    return np.full(n, float(value))


def _long_line(block: bytes) -> int | None:
    """The offset where the first line longer than MAX_LINE_BYTES starts in ``block``, or None."""
    if len(block) <= MAX_LINE_BYTES:
        return None
    newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(block)]))
    long = np.flatnonzero(ends - starts > MAX_LINE_BYTES)
    return int(starts[long[0]]) if len(long) else None


def _regular_size(stream: Any) -> int | None:
    """The size of a regular file behind ``stream`` (for progress), None for pipes, terminals, buffers."""
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _ready(stream: Any) -> bool:
    """Whether more input can be read without waiting (always, for in-memory streams)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return True
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True
