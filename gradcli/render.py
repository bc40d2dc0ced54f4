"""Rows to text: a rich table for people; plain, JSON lines and CSV for programs.

A :class:`Renderer` writes to the stream it is given, one row at a time (so output streams), and
imports rich only for the table.

Layout rules (the README's "Output formats" section):

- A table never truncates or wraps a number: number columns are ``no_wrap`` and sized to their
  widest cell; when the table cannot fit the terminal at that size it is written as a vertical
  key/value list instead (one ``key  value`` line per cell, which the terminal may soft-wrap but
  which rich never cuts).
- ``--points`` as a table: one table for the whole run, up to :data:`TABLE_MAX_ROWS` rows; beyond
  that, the rows (the buffered ones first) are written as plain columns under one header line.
- ``plain``: exactly one line per point. ``taylor`` writes the N+1 derivatives then the N+1
  coefficients; ``--show-symbolic`` appends `` ; `` and the symbolic derivatives, separated by `` ; ``.
- ``json``: one object per point, every key every time (:data:`JSON_SCHEMA`).
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import math
import string
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import mpmath

from .check import CheckResult
from .commands import Block, Job, Row
from .graph import rows_all, rows_any

__all__ = ["Renderer", "number", "json_number", "compact_wrt", "JSON_SCHEMA", "TABLE_MAX_ROWS", "waiting",
           "taylor_polynomial", "symbolic_text", "SYMBOLIC_FORMATS"]

#: A ``--points`` table holds at most this many rows; a longer run is written as plain columns.
TABLE_MAX_ROWS = 1000
#: Separates the values from the symbolic derivatives (and those from each other) in plain output.
SYMBOLIC_SEP = " ; "
#: ``--symbolic-format``: sympy's printers (``pretty`` is multi-line: table and JSON only).
SYMBOLIC_FORMATS = ("text", "pretty", "latex")


def number(v: Any, digits: int | None) -> str:
    """A value as text: ``repr(float)`` in float64, N significant digits with ``--digits N``."""
    if isinstance(v, mpmath.mpf):
        return _mp_text(v, digits)
    return repr(float(v))


def _mp_text(v: mpmath.mpf, digits: int | None) -> str:
    return mpmath.nstr(v, digits or 15, strip_zeros=False)


def json_number(v: Any, digits: int | None) -> Any:
    """JSON value: a float in float64; a string with ``--digits`` (beyond float's range and precision)."""
    if isinstance(v, mpmath.mpf):
        return _mp_text(v, digits) if mpmath.isfinite(v) else None  # null, like a float64 nan
    if isinstance(v, list):
        return [json_number(x, digits) for x in v]
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def compact_wrt(wrt: Any) -> str:
    """``--wrt`` in the CLI's compact spelling: ["x", "x", "x", "y"] -> "x:3,y" (consecutive repeats)."""

    from .parse import Wrt

    return Wrt(wrt).spec


def _oracle_json(v: Any, digits: int | None) -> Any:
    """The oracle's value in the run's precision: a float in float64, N digits with --digits."""
    if v is None:
        return None
    return json_number(v, digits) if digits else json_number(float(v), None)


def _nested(v: Any, fn: Any) -> Any:
    return [_nested(x, fn) for x in v] if isinstance(v, list) else fn(v)


def _json_float(v: Any) -> float | None:
    """A float JSON can carry: infinite or missing becomes null."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


# ---- the one JSON schema ------------------------------------------------------------------------------------
def _shaped(leaf: dict[str, Any]) -> dict[str, Any]:
    """A number (d), a list (grad, taylor) or a list of rows (hessian, jacobian) of ``leaf``."""
    return {"anyOf": [leaf, {"type": "array", "items": leaf},
                      {"type": "array", "items": {"type": "array", "items": leaf}}]}


_NUMBER = {"type": ["number", "string", "null"]}  # float64; decimal string with --digits; null: not finite

#: Every ``--json`` line of every command validates against this (JSON Schema, draft 2020-12).
#: Beyond what the schema can say: ``value``, ``check.radius``, ``check.symbolic_value`` and
#: ``check.symbolic`` (where not null) have the same shape, which is fixed by ``command``.
JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "gradcli --json: one object per point",
    "type": "object",
    "additionalProperties": False,
    "required": ["command", "expr", "wrt", "order", "at", "value", "coefficients", "line", "error", "check"],
    "properties": {
        "command": {"enum": ["d", "grad", "hessian", "jacobian", "taylor", "plot"]},
        "expr": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "wrt": {"type": "string"},
        "order": {"type": "integer", "minimum": 0},
        "at": {"type": "object", "additionalProperties": {"type": ["number", "string"]}},
        "value": _shaped(_NUMBER),
        "coefficients": {"anyOf": [{"type": "null"}, {"type": "array", "items": _NUMBER}]},
        "line": {"type": ["integer", "null"]},
        "error": {"type": ["string", "null"]},
        # only with `taylor --poly` (the one optional key): the Taylor polynomial as a sympy expression
        # string, null where a coefficient is not finite
        "poly": {"type": ["string", "null"]},
        "check": {
            "type": "object",
            "additionalProperties": False,
            "required": ["method", "bits", "radius", "certified", "symbolic", "symbolic_value", "rel_err",
                         "skipped", "ok"],
            "properties": {
                "method": {"enum": ["ball", "bound", "estimate", None]},
                "bits": {"type": ["integer", "null"]},
                "radius": _shaped({"type": ["number", "null"]}),
                "certified": {"type": ["boolean", "null"]},
                "symbolic": _shaped({"type": ["string", "null"]}),
                "symbolic_value": _shaped(_NUMBER),
                "rel_err": {"type": ["number", "null"]},
                "skipped": {"type": ["string", "null"]},
                "ok": {"type": ["boolean", "null"]},
            },
        },
    },
}


def _fill(template: str, cols: list[list[str]], n: int) -> list[str]:
    """``[template.format(*row) for row in zip(*cols)]``, as one ``str.join`` per row over the template's
    literal pieces and the cells: half the time of ``str.format`` (0.4 against 0.8 us a row of 8 fields)."""
    parts: list[Any] = []
    fields = iter(cols)
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(itertools.repeat(literal, n))
        if field is not None:
            parts.append(next(fields))
    return list(map("".join, zip(*parts)))


def _shape_like(flat: list[Any], kind: str, ncols: int) -> Any:
    """Entries in row-major order, shaped like the command's value (its ``kind``)."""
    if kind == "scalar":
        return flat[0] if flat else None
    if kind == "matrix":
        return [flat[i:i + ncols] for i in range(0, len(flat), ncols)]
    return list(flat)


# ---- sympy's printers: the Taylor polynomial (taylor --poly) and --symbolic-format ----------------------------
def symbolic_text(expr: Any, fmt: str = "text") -> str:
    """sympy's ``sstr``, ``pretty`` (unicode, never wrapped at 80 columns) or ``latex`` of ``expr``."""
    import sympy

    if fmt == "pretty":
        return sympy.pretty(expr, use_unicode=True, wrap_line=False)
    if fmt == "latex":
        return sympy.latex(expr)
    return sympy.sstr(expr)


def taylor_polynomial(coefficients: list[Any], var: str, center: Any, digits: int | None,
                      fmt: str = "text") -> str | None:
    """sum c_k (var - center)^k with the certified coefficients, in rising powers, printed by sympy
    (``text``: a sympy expression string; ``latex``). Each number is written as gradcli writes it
    (``repr(float)``, N digits with ``--digits``), never rounded by sympy; a zero coefficient's term is
    left out. None where a coefficient or the center is not finite (a --points row outside the domain).

    >>> taylor_polynomial([1.0, 2.0, -0.5], "x", 1.5, None)
    '1.0 + 2.0*(x - 1.5) - 0.5*(x - 1.5)**2'
    """
    import sympy
    from sympy.printing.latex import LatexPrinter
    from sympy.printing.str import StrPrinter

    values = [center, *coefficients]
    if any(v is None or not (mpmath.isfinite(v) if isinstance(v, mpmath.mpf) else math.isfinite(float(v)))
           for v in values):
        return None
    texts: dict[Any, str] = {}

    def flt(v: Any) -> Any:
        f = sympy.Float(v._mpf_, precision=v.context.prec) if isinstance(v, mpmath.mpf) else sympy.Float(float(v))
        texts[f], texts[-f] = number(v, digits), number(-v, digits)
        return f

    x = sympy.Symbol(var)
    zero = center == 0
    base = x if zero else sympy.Add(x, -flt(center), evaluate=False)
    terms = []
    for k, c in enumerate(coefficients):
        if c == 0:
            continue
        c = flt(c)
        if k == 0:
            terms.append(c)
            continue
        power = base if k == 1 else sympy.Pow(base, k, evaluate=False)
        terms.append(sympy.Mul(c, power, evaluate=False))
    if not terms:
        return "0"
    poly = terms[0] if len(terms) == 1 else sympy.Add(*terms, evaluate=False)

    def print_float(self: Any, e: Any) -> str:  # a negative coefficient is printed as '- ' and |c|
        return texts.get(e) or repr(float(e))

    printer = type("_Poly", (LatexPrinter if fmt == "latex" else StrPrinter,), {"_print_Float": print_float})
    return printer({"order": "none"}).doprint(poly)


# ---- a "checking..." status on a terminal ------------------------------------------------------------------
@contextmanager
def waiting(message: str = "checking…", delay: float = 0.5, *, stream: TextIO | None = None) -> Iterator[None]:
    """A rich status spinner on stderr when the body takes longer than ``delay`` seconds, and only
    when stderr is a terminal; it is gone before the body's result is printed."""
    err = stream if stream is not None else sys.stderr
    try:
        tty = err.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        yield
        return
    lock, state = threading.Lock(), {"status": None, "done": False}

    def start() -> None:
        from rich.console import Console

        with lock:
            if state["done"]:
                return
            status = Console(file=err, stderr=err is sys.stderr).status(message)
            status.start()
            state["status"] = status

    timer = threading.Timer(delay, start)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
            if state["status"] is not None:
                state["status"].stop()


# ---- a grid of cells: a rich table, or key/value lines when it cannot fit -----------------------------------
class _Grid:
    """Columns (header, numeric?) and rows of rich-markup cells. Numeric columns never wrap."""

    def __init__(self, columns: list[tuple[str, bool, str]], title: str | None = None, *,
                 name_rows: bool = False) -> None:
        self.columns = columns  # (header markup, numeric, justify)
        self.title = title
        self.name_rows = name_rows  # vertical layout: head each row "<first header> <first cell>"
        self.optional: set[int] = set()  # columns dropped (first) when the full table does not fit
        self.rows: list[list[str]] = []
        self.caption: str | None = None

    def add(self, cells: list[str]) -> None:
        self.rows.append(cells)

    def min_width(self, keep: list[int] | None = None) -> int:
        """The narrowest table that shows every number whole: numeric columns at their widest cell,
        text columns at their longest word (rich folds longer text), plus padding and borders."""
        from rich.cells import cell_len
        from rich.text import Text

        keep = list(range(len(self.columns))) if keep is None else keep
        total = len(keep) + 1  # vertical rules
        for j in keep:
            header, numeric, _ = self.columns[j]
            cells = [Text.from_markup(header)] + [Text.from_markup(r[j]) for r in self.rows]
            if numeric:  # a multi-line cell (--symbolic-format pretty): its widest line
                width = max(max(map(cell_len, t.plain.split("\n"))) for t in cells)
            else:
                width = max((len(w) for t in cells for w in t.plain.split()), default=1)
            total += width + 2
        return total

    def print(self, console: Any) -> None:
        from rich.table import Table
        from rich.text import Text

        if self.title:
            console.print(Text.from_markup(self.title), soft_wrap=True)
        keep = list(range(len(self.columns)))
        if console.width < self.min_width(keep):
            keep = [j for j in keep if j not in self.optional]
        if console.width >= self.min_width(keep):
            table = Table()
            for j in keep:
                header, numeric, justify = self.columns[j]
                table.add_column(header, justify=justify, no_wrap=numeric, overflow="fold")
            for r in self.rows:
                table.add_row(*(r[j] for j in keep))
            if self.caption:
                table.caption = self.caption
            console.print(table)
            return
        self.print_vertical(console)

    def print_vertical(self, console: Any) -> None:
        """Each row: its first cell, then one indented ``header  cell`` line per other column."""
        from rich.text import Text

        headers = [Text.from_markup(h).plain for h, _, _ in self.columns[1:]]
        pad = max((len(h) for h in headers), default=0)
        first = Text.from_markup(self.columns[0][0]).plain + " " if self.name_rows else ""
        for r in self.rows:
            console.print(Text(first).append_text(Text.from_markup(r[0])), soft_wrap=True)
            for h, cell in zip(headers, r[1:]):
                line = Text("  " + h.ljust(pad) + "  ")
                # a multi-line cell (pretty output) keeps its drawing: later lines under the first
                line.append_text(Text.from_markup(cell.replace("\n", "\n" + " " * (pad + 4))))
                console.print(line, soft_wrap=True)
        if self.caption:
            console.print(Text.from_markup(self.caption), soft_wrap=True)


class Renderer:
    """Writes a job's rows in one format to one stream."""

    def __init__(self, job: Job, fmt: str, stream: TextIO, *, show_symbolic: bool = False,
                 variables: list[str] | None = None, color: bool | None = None, symbolic_format: str = "text",
                 poly: bool = False, continuation: bool = False) -> None:
        self.job, self.fmt, self.stream = job, fmt, stream
        self.show_symbolic = show_symbolic
        #: sympy's printer for the symbolic derivatives (SYMBOLIC_FORMATS); ``poly``: taylor --poly
        self.symbolic_format, self.poly = symbolic_format, poly
        self._symbolic_texts: list[str | None] | None = None
        self.variables = variables or []
        self.color = color
        self._rows: list[Row] = []
        self._csv: Any = None
        #: these rows continue a run another writer began (a Dask piece after the first): no CSV header,
        #: and no symbolic derivative in JSON's first object (a run has one, in its first row)
        self.continuation = continuation
        self._json_rows = 1 if continuation else 0
        self._console: Any = None
        # --points as a table: rows buffered for one table, until TABLE_MAX_ROWS; then plain columns
        self._points_grid: _Grid | None = None
        self._streaming = False
        #: called once, just before a --points table starts writing rows as they come (the CLI stops
        #: its progress bar there, so the two never share the terminal)
        self.before_streaming: Callable[[], None] = lambda: None

    # -- shape of values -----------------------------------------------------------------------------
    def _symbolic(self, row: Row) -> list[str | None]:
        """The symbolic derivative of each entry (the row's, found by the evaluation) in
        ``symbolic_format``, None where sympy did not finish; formatted once per run."""
        if self._symbolic_texts is not None:
            return self._symbolic_texts
        exprs = row.symbolic or [None] * len(self.job.entries)
        texts = [None if e is None else symbolic_text(e, self.symbolic_format) for e in exprs]
        if row.symbolic is not None:  # the same for every row of the run
            self._symbolic_texts = texts
        return texts

    def _poly(self, row: Row, fmt: str = "text") -> str | None:
        """taylor --poly: this row's Taylor polynomial around its point (None: not finite there)."""
        job = self.job
        if row.error is not None:
            return None
        var = job.wrt[0]
        return taylor_polynomial(self._flat(row.extra["coefficients"]), var, row.at.get(var, 0), job.digits, fmt)

    def _ncols(self) -> int:
        return len(self.job.wrt)

    def _shape(self, flat: list[Any]) -> Any:
        return _shape_like(flat, self.job.command.kind, self._ncols())

    # -- per format ----------------------------------------------------------------------------------
    def row(self, row: Row) -> None:
        getattr(self, f"_row_{self.fmt}")(row)

    def close(self) -> None:
        if self.fmt == "table":
            if self._points_grid is not None:
                if not self._streaming:
                    if self._rich().width >= self._points_grid.min_width():
                        self._points_grid.print(self._rich())
                    else:  # too narrow for the table: the same rows as plain columns
                        self._start_streaming()
                self._points_grid = None
            else:
                self._table()
        self.stream.flush()

    def block(self, block: Block) -> None:
        """Write one chunk of ``--points`` rows and flush, so output streams: plain float64 values in one
        vectorised pass (``repr(float)``, as :meth:`row` writes them), table rows into the run's one
        table, other formats row by row. A row outside the domain reads ``nan`` (JSON: null, with "error")."""
        if self.fmt == "plain" and not self.show_symbolic and not self.poly and block.values.dtype != object:
            self.stream.write(_plain_block(block))
        elif self.fmt == "csv" and not self.show_symbolic and not self.poly and block.values.dtype != object and all(
                not b.single for b in block.checks or []):
            self._csv_block(block)
        elif self.fmt == "table":
            self._points_table(block)
        elif self.fmt == "json" and not self.poly and block.values.dtype != object:
            self._json_block(block)
        else:
            for i in range(block.chunk.size):
                self.row(block.row(i))
        self.stream.flush()

    def _rich(self) -> Any:
        """The rich console on our stream (width from the terminal or COLUMNS; never below 1)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream, color_system="auto" if self.color is not False else None,
                                    force_terminal=self.color, highlight=False)
            if self._console.width < 1:  # COLUMNS=0: rich would print nothing at all
                self._console.width = 1
        return self._console

    # -- --points as a table ---------------------------------------------------------------------------
    def _points_columns(self) -> list[tuple[str, bool, str]]:
        from rich.markup import escape

        cols = [("line", True, "right")] + [(escape(v), True, "right") for v in self.variables]
        cols += [(escape(label), True, "right") for label in self._row_labels()]
        if self.job.check:
            cols.append(("check", False, "center"))
        return cols

    def _points_table(self, block: Block) -> None:
        from rich.markup import escape

        job, d = self.job, self.job.digits
        if self._points_grid is None:
            self._points_grid = _Grid(self._points_columns(),
                                      title=escape("f = " + ", ".join(p.text for p in job.preps)), name_rows=True)
        grid = self._points_grid
        failed = block.check_failed
        for i in range(block.chunk.size):
            row = block.row(i)
            cells = [str(row.line)] + [number(row.at[v], d) if v in row.at else "" for v in self.variables]
            cells += [number(v, d) for v in self._flat(row.value)]
            if job.check:
                if row.error is not None:
                    cells.append("[red]not finite[/]")
                elif failed[i]:
                    cells.append("[red]✗ MISMATCH[/]")
                else:
                    marks = {_mark(c) for c in row.checks or []}
                    cells.append(" ".join(sorted(marks)) or "—")
            if self._streaming:
                self._write_plain_row(cells)
            else:
                grid.add(cells)
        if not self._streaming and len(grid.rows) > TABLE_MAX_ROWS:
            self._start_streaming()

    def _start_streaming(self) -> None:
        """Past TABLE_MAX_ROWS: the header once, then the buffered rows and every later one as plain
        columns (the same cells, separated by two spaces)."""
        from rich.text import Text

        grid = self._points_grid
        assert grid is not None
        self.before_streaming()
        self._streaming = True
        console = self._rich()
        if grid.title:
            console.print(Text.from_markup(grid.title), soft_wrap=True)
        self._write_plain_row([h for h, _, _ in grid.columns])
        for cells in grid.rows:
            self._write_plain_row(cells)
        grid.rows = []

    def _write_plain_row(self, cells: list[str]) -> None:
        """One row as plain text (no colour: rich per row would cost 30x the computation)."""
        self.stream.write("  ".join(_unmarked(c) for c in cells) + "\n")

    def _flat(self, value: Any) -> list[Any]:
        if isinstance(value, list):
            return [x for v in value for x in self._flat(v)]
        return [value]

    # -- plain ------------------------------------------------------------------------------------------
    def _row_plain(self, row: Row) -> None:
        d = self.job.digits
        if self.poly:  # taylor --poly: the polynomial, one line per point (nan outside the domain)
            self.stream.write((self._poly(row) or "nan") + "\n")
            return
        line = " ".join(number(v, d) for v in self._flat(row.value))
        if self.job.command.series:
            line += " " + " ".join(number(v, d) for v in self._flat(row.extra["coefficients"]))
        if self.show_symbolic:
            line += SYMBOLIC_SEP + SYMBOLIC_SEP.join(s or "?" for s in self._symbolic(row))
        self.stream.write(line + "\n")

    def _row_latex(self, row: Row) -> None:
        """taylor --poly --format latex: the polynomial in LaTeX, one line per point."""
        self.stream.write((self._poly(row, "latex") or "nan") + "\n")

    # -- json -------------------------------------------------------------------------------------------
    def _row_json(self, row: Row) -> None:
        obj = self.json_object(row)
        self.stream.write(json.dumps(obj, allow_nan=False, ensure_ascii=False) + "\n")

    def json_object(self, row: Row) -> dict[str, Any]:
        """One row as the JSON schema's object (``gradcli plot --format json`` builds on it too)."""
        job, d = self.job, self.job.digits
        obj: dict[str, Any] = {
            "command": job.command.name,
            "expr": self._json_head[0],
            "wrt": self._json_head[1],
            "order": self._json_head[2],
            "at": {k: json_number(v, d) for k, v in row.at.items()},
            "value": _nested(row.value, lambda v: json_number(v, d)),
            "coefficients": (_nested(row.extra["coefficients"], lambda v: json_number(v, d))
                             if job.command.series else None),
            "line": row.line,
            "error": row.error.message if row.error is not None else None,
            "check": self._check_json(row, first=self._json_rows == 0),
        }
        if self.poly:
            obj["poly"] = self._poly(row)
        self._json_rows += 1
        return obj

    def _json_block(self, block: Block) -> None:
        """:meth:`_row_json` for a float64 chunk: the same objects, text for text. Rows the vectorised
        estimate passed (the bulk of a large chunk) are written from column arrays in one pass; the rest
        (outside the domain, put through the ball engine, checked one at a time, the run's first row with
        the symbolic derivative) go through :meth:`json_object`."""
        import numpy as np

        n = block.chunk.size
        if n == 0:
            return
        special = np.array(block.bad, dtype=bool, copy=True)
        special[list(block.certs)] = True
        for b in block.checks or []:
            special[list(b.single)] = True
        if self._json_rows == 0:
            special[0] = True
        lines: list[str] = [""] * n
        for i in np.flatnonzero(special).tolist():  # in order: the first row of the run comes first
            lines[i] = json.dumps(self.json_object(block.row(i)), allow_nan=False, ensure_ascii=False)
        simple = np.flatnonzero(~special)
        if simple.size:
            for i, text in zip(simple.tolist(), self._json_lines(block, simple)):
                lines[i] = text
            self._json_rows += int(simple.size)
        self.stream.write("\n".join(lines) + "\n")

    def _json_lines(self, block: Block, rows: Any) -> list[str]:
        """The JSON lines of ``rows`` of a float64 chunk whose values passed the bound or the estimate
        (certified, method ``block.vouched.method``, finite, no check of their own), built from columns."""
        import numpy as np

        job = self.job

        def dumps(v: Any) -> str:
            return json.dumps(v, ensure_ascii=False).replace("{", "{{").replace("}", "}}")

        def floats(a: Any) -> list[str]:
            a = np.asarray(a, dtype=np.float64)
            if np.isfinite(a).all():  # the usual case: one C-level map, no test per value
                return list(map(repr, a.tolist()))
            return [repr(v) if math.isfinite(v) else "null" for v in a.tolist()]

        def shaped(k: int) -> str:  # ``k`` placeholders shaped like the command's value
            return json.dumps(_shape_like(["\0"] * k, job.command.kind, self._ncols())).replace('"\\u0000"', "{}")

        n = len(rows)
        flat = np.asarray(block.values, dtype=np.float64).reshape(block.chunk.size, -1)[rows]
        entries = flat.shape[1]
        cols: list[list[str]] = []
        exprs, wrt, order = self._json_head
        head = (f'{{{{"command": {dumps(job.command.name)}, "expr": {dumps(exprs)}, "wrt": {dumps(wrt)}, '
                f'"order": {order}, "at": {{{{')
        names = list(block.chunk.values)
        head += ", ".join(f"{dumps(k)}: {{}}" for k in names) + '}}, "value": ' + shaped(entries)
        cols += [floats(np.asarray(block.chunk.values[k])[rows]) for k in names]
        cols += [floats(flat[:, j]) for j in range(entries)]
        if job.command.series:
            coeffs = np.asarray(block.extra["coefficients"], dtype=np.float64).reshape(block.chunk.size, -1)[rows]
            head += ', "coefficients": [' + ", ".join(["{}"] * coeffs.shape[1]) + "]"
            cols += [floats(coeffs[:, j]) for j in range(coeffs.shape[1])]
        else:
            head += ', "coefficients": null'
        lines = block.chunk.lines
        method = block.vouched.method
        head += f', "line": {{}}, "error": null, "check": {{{{"method": "{method}", "bits": null, "radius": '
        head += shaped(entries).replace("{}", "null").replace("{", "{{").replace("}", "}}")
        cols.append(["null" if lines[i] is None else str(lines[i]) for i in rows.tolist()])
        head += ', "certified": true, "symbolic": null, "symbolic_value": ' + shaped(entries)
        if job.check and block.checks:
            status = np.stack([b.status[rows] for b in block.checks], axis=1)
            value = np.stack([np.asarray(b.value, dtype=np.float64)[rows] for b in block.checks], axis=1)
            ran = status >= 0
            cols += [floats(value[:, j]) if ran[:, j].all()
                     else [v if r else "null" for v, r in zip(floats(value[:, j]), ran[:, j].tolist())]
                     for j in range(entries)]
            errs = np.stack([b.rel_err[rows] for b in block.checks], axis=1)
            with np.errstate(invalid="ignore"):
                worst = np.where(rows_any(ran), np.where(ran, errs, -np.inf).max(axis=1), np.nan)
            cols.append(floats(worst))
            reasons = [dumps(b.skipped[0] or "not checked") for b in block.checks]
            skipped = ["null"] * n
            for i in np.flatnonzero(~rows_all(ran)).tolist():  # rows where some entry's check did not run
                why = list(dict.fromkeys(r for r, s in zip(reasons, (~ran[i]).tolist()) if s))
                skipped[i] = dumps("; ".join(json.loads(w) for w in why))
            cols.append(skipped)
            cols.append(np.where(rows_any(status == 0), "false", "true").tolist())
        else:
            cols += [["null"] * n for _ in range(entries)]
            cols += [["null"] * n, [dumps("--no-check" if not job.check else None)] * n, ["true"] * n]
        head += ', "rel_err": {}, "skipped": {}, "ok": {}}}}}'
        return _fill(head, cols, n)

    @functools.cached_property
    def _json_head(self) -> tuple[list[str], str, int]:
        """The keys every row of a run shares (computed once, not per row)."""
        job = self.job
        return [p.text for p in job.preps], compact_wrt(job.wrt), job.command.order(job)

    def _check_json(self, row: Row, *, first: bool) -> dict[str, Any]:
        """The certificate and the symbolic witness, always the same keys (see JSON_SCHEMA)."""
        job, d = self.job, self.job.digits
        n = len(self._flat(row.value))
        certs = getattr(row, "certs", None)
        certs = list(certs) if certs is not None else [None] * n
        checks = list(row.checks) if row.checks is not None else [None] * n
        present = [c for c in certs if c is not None]
        methods = {getattr(c, "method", None) for c in present}
        bits = [c.bits for c in present if getattr(c, "bits", None) is not None]
        if not present:
            certified = None
        elif any(c.ok is False for c in present):
            certified = False
        else:
            certified = True if len(present) == len(certs) and all(c.ok is True for c in present) else None
        ran = [c for c in checks if c is not None and c.ok is not None]
        errs = [c.rel_err for c in ran if c.rel_err is not None]
        reasons = []
        for c in checks:
            if c is not None and c.skipped:
                why = c.skipped
                if why not in reasons:
                    reasons.append(why)
        if not job.check:
            reasons = ["--no-check"]
        elif row.error is not None:
            reasons = ["the value is not finite"]
        symbolic = None
        if first and (job.check or self.show_symbolic):
            symbolic = self._shape(self._symbolic(row))
        failed = certified is False or any(c.ok is False for c in ran)
        anything = bool(present) or bool(ran)
        return {
            "method": None if not methods else next((m for m in sorted(methods) if m != "ball"), "ball"),
            "bits": max(bits) if bits else None,
            "radius": self._shape([_json_float(getattr(c, "radius", None)) if c is not None else None
                                   for c in certs]),
            "certified": certified,
            "symbolic": symbolic,
            "symbolic_value": self._shape([_oracle_json(c.value, d) if c is not None and c.ok is not None else None
                                           for c in checks]),
            "rel_err": _json_float(max(errs)) if errs else None,
            "skipped": "; ".join(reasons) if reasons else None,
            "ok": False if failed else (True if anything else None),
        }

    # -- csv --------------------------------------------------------------------------------------------
    def _csv_header(self) -> list[str]:
        labels = self._entry_names()
        head = list(self.variables) + labels
        if self.job.check:
            head += ["check_ok", "check_rel_err"]
        if self.show_symbolic:
            head += [f"symbolic_{n}" if len(labels) > 1 else "symbolic" for n in labels]
        if self.poly:
            head.append("poly")
        return head

    def _entry_names(self) -> list[str]:
        return self.job.command.column_names(self.job)

    def _row_csv(self, row: Row) -> None:
        d = self.job.digits
        if self._csv is None:
            self._csv = csv.writer(self.stream, lineterminator="\n")
            if not self.continuation:
                self._csv.writerow(self._csv_header())
        cells = [number(row.at[v], d) if v in row.at else "" for v in self.variables]
        cells += [number(v, d) for v in self._flat(row.value)]
        if self.job.command.series:
            cells += [number(v, d) for v in self._flat(row.extra["coefficients"])]
        if self.job.check:
            ok = row.check_ok
            errs = [c.rel_err for c in (row.checks or []) if c.rel_err is not None]
            cells += ["" if ok is None else str(ok).lower(), repr(max(errs)) if errs else ""]
        if self.show_symbolic:
            cells += [s or "" for s in self._symbolic(row)]
        if self.poly:
            cells.append(self._poly(row) or "")
        self._csv.writerow(cells)

    def _csv_block(self, block: Block) -> None:
        """:meth:`_row_csv` for a whole float64 chunk in one vectorised pass (the same cells)."""
        import numpy as np

        if self._csv is None:
            self._csv = csv.writer(self.stream, lineterminator="\n")
            if not self.continuation:
                self._csv.writerow(self._csv_header())
        n = block.chunk.size
        if n == 0:
            return
        cols: list[list[str]] = []
        for v in self.variables:
            at = block.chunk.values.get(v)
            cols.append(list(map(repr, np.asarray(at, dtype=np.float64).tolist())) if at is not None else [""] * n)
        flat = block.values.reshape(n, -1)
        if self.job.command.series:
            flat = np.concatenate([flat, block.extra["coefficients"].reshape(n, -1)], axis=1)
        cols += [list(map(repr, c)) for c in flat.T.tolist()]
        if self.job.check:
            status = np.stack([b.status for b in block.checks], axis=1)
            errs = np.stack([b.rel_err for b in block.checks], axis=1)
            ok = np.where(rows_any(status == 0), "false", np.where(rows_all(status == 1), "true", ""))
            with np.errstate(all="ignore"):
                known = ~rows_all(np.isnan(errs))
                worst = np.where(known, np.nanmax(np.where(np.isnan(errs), -np.inf, errs), axis=1), np.nan)
            ok = np.where(block.bad, "", ok)
            cols.append(ok.tolist())
            cols.append(["" if (b or np.isnan(e)) else repr(e) for b, e in zip(block.bad.tolist(), worst.tolist())])
        self.stream.write("\n".join(map(",".join, zip(*cols))) + "\n")

    def _row_table(self, row: Row) -> None:
        self._rows.append(row)

    # -- the rich table (single points) ----------------------------------------------------------------
    def _table(self) -> None:
        from rich.markup import escape

        console = self._rich()
        job, d = self.job, self.job.digits
        exprs = ", ".join(p.text for p in job.preps)
        for row in self._rows:
            where = ", ".join(f"{k} = {number(v, d)}" for k, v in row.at.items())
            title = escape(f"f = {exprs}" + (f"  at  {where}" if where else ""))
            if job.command.kind == "matrix":
                for grid in self._matrix_grids(row, title):
                    grid.print(console)
                continue
            certs = getattr(row, "certs", None)
            radii = [getattr(c, "radius", None) if c is not None else None for c in certs] if certs else []
            show_radius = any(r is not None for r in radii)
            coeffs = self._flat(row.extra.get("coefficients", [])) if job.command.series else None
            columns = [("derivative", False, "left"), ("value", True, "right")]
            if job.check:
                columns += [("symbolic value", True, "right"), ("check", True, "center")]
            if self.show_symbolic:  # pretty output is drawn in lines: never wrapped, like a number
                columns.append(("symbolic derivative", self.symbolic_format == "pretty", "left"))
            if coeffs is not None:
                columns.append(("coefficient f⁽ᵏ⁾/k!", True, "right"))
            if show_radius:
                columns.append(("± radius", True, "right"))
            grid = _Grid(columns, title=title)
            # a narrow terminal drops the oracle's value (a mismatch is on stderr with both values) and
            # the radius before it falls back to the vertical layout
            grid.optional = {j for j, c in enumerate(columns) if c[0] in ("symbolic value", "± radius")}
            symbolic = self._symbolic(row) if self.show_symbolic else []
            for i, (label, v) in enumerate(zip(self._row_labels(), self._flat(row.value))):
                cells = [f"[bold]{escape(label)}[/]", number(v, d)]
                if job.check:
                    c = row.checks[i] if row.checks else None
                    oracle = c.value if c is not None else None
                    shown = "—" if oracle is None else number(oracle if d else float(oracle), d)
                    cells += [shown, _mark(c)]
                if self.show_symbolic:
                    cells.append(escape(symbolic[i] or "?"))
                if coeffs is not None:
                    cells.append(number(coeffs[i], d))
                if show_radius:
                    r = radii[i] if i < len(radii) else None
                    cells.append("—" if r is None else f"{r:.1e}")
                grid.add(cells)
            notes = {c.skipped for c in (row.checks or []) if c.skipped}
            if notes:
                grid.caption = escape("; ".join(sorted(notes)))
            grid.print(console)
            if self.poly:
                from rich.text import Text

                poly = self._poly(row)
                console.print(Text(f"Taylor polynomial around {job.wrt[0]} = {number(row.at[job.wrt[0]], d)}:\n"
                                   f"{poly or 'not finite'}"), soft_wrap=True)

    def _matrix_grids(self, row: Row, title: str) -> list[_Grid]:
        """A Hessian or Jacobian as a matrix: a row per gradient entry (per expression), a column per
        variable; each cell the value and its check mark (with sympy's value when they disagree).
        With --show-symbolic, a second matrix holds the symbolic derivatives."""
        from rich.markup import escape

        job, d = self.job, self.job.digits
        corner, rows, cols = job.command.matrix_labels(job)
        values = _Grid([(corner, False, "left")] + [(escape(c), True, "right") for c in cols], title=title)
        for i, (label, entries) in enumerate(zip(rows, row.value)):
            cells = [f"[bold]{escape(label)}[/]"]
            for j, v in enumerate(entries):
                text = number(v, d)
                check = row.checks[i * len(cols) + j] if row.checks else None
                if job.check:
                    text += " " + _mark(check)
                    if check is not None and check.ok is False and check.value is not None:
                        text += f" (sympy {number(check.value if d else float(check.value), d)})"
                cells.append(text)
            values.add(cells)
        notes = {c.skipped for c in (row.checks or []) if c.skipped}
        if notes:
            values.caption = escape("; ".join(sorted(notes)))
        grids = [values]
        if self.show_symbolic:
            symbolic = self._symbolic(row)
            pretty = self.symbolic_format == "pretty"
            sym = _Grid([(corner, False, "left")] + [(escape(c), pretty, "left") for c in cols],
                        title="symbolic derivatives")
            for i, label in enumerate(rows):
                sym.add([f"[bold]{escape(label)}[/]",
                         *(escape(symbolic[i * len(cols) + j] or "?") for j in range(len(cols)))])
            grids.append(sym)
        return grids

    def _row_labels(self) -> list[str]:
        return self.job.command.entry_labels(self.job)


@functools.lru_cache(maxsize=256)
def _plain_markup(cell: str) -> str:
    from rich.text import Text

    return Text.from_markup(cell).plain


def _unmarked(cell: str) -> str:
    """A cell's text without rich markup (numbers have none; marks and labels come from a few)."""
    return _plain_markup(cell) if "[" in cell else cell


def _mark(c: CheckResult | None) -> str:
    if c is None:
        return "—"
    if c.ok is None:
        return "[yellow]skipped[/]"
    if c.ok:
        return "[green]✓[/]" + (" (mpmath)" if c.method != "sympy" else "")
    return "[red]✗ MISMATCH[/]"


def _plain_block(block: Block) -> str:
    """A chunk's float64 values in plain format: one line per row (taylor: the derivatives, then the
    coefficients), ``repr(float)``."""
    n = block.chunk.size
    if n == 0:
        return ""
    flat = block.values.reshape(n, -1)
    if block.job.command.series:
        import numpy as np

        flat = np.concatenate([flat, block.extra["coefficients"].reshape(n, -1)], axis=1)
    if flat.shape[1] == 1:
        return "\n".join(map(repr, flat[:, 0].tolist())) + "\n"
    line = " ".join(["{!r}"] * flat.shape[1]).format  # one format call per row: 20% faster than joins
    return "\n".join(map(line, *flat.T.tolist())) + "\n"


# ---- gradcli explain on a terminal (issue 12) ------------------------------------------------------------
def explain_rich(e: Any, console: Any) -> None:
    """``gradcli explain`` for people: a tree (expression, engine, certificate) and one table per tape,
    then the Taylor table. Every number is ``repr(float)``, never cut (columns are ``no_wrap``)."""
    from rich.markup import escape
    from rich.table import Table
    from rich.tree import Tree

    from .commands import partial_label

    where = ", ".join(f"{k} = {v!r}" for k, v in e.at.items())
    tree = Tree(escape(f"{partial_label(list(e.wrt))} of f = {e.expr}  at  {where}  =  {e.value!r}"))
    tree.add(escape(f"engine: {e.engine} — {e.why}"))
    tree.add(escape(f"certificate: {e.certified}"))
    grad = ", ".join(f"∂f/∂{k} = {v!r}" for k, v in e.partials.items())
    tree.add(escape(f"adjoints of the variables (the gradient): {grad}"))
    console.print(tree)

    def table(title: str, steps: Any, adjoint: str) -> None:
        # a _Grid: names are never cut ("…"); a table too wide for the terminal becomes key/value lines
        columns = [("#", True, "right"), ("out", True, "left"), ("op", False, "left"), ("inputs", False, "left"),
                   ("value", True, "right"), (escape(adjoint), True, "right")]
        grid = _Grid(columns, title=escape(title), name_rows=True)
        for i, s in enumerate(steps):
            params = "".join(f" {k}={v}" for k, v in s.params.items())
            grid.add([str(i), escape(s.out), escape(s.op + params), escape(", ".join(s.inputs)), repr(s.value),
                      repr(s.adjoint)])
        grid.print(console)

    table("tape (recording order; forward value, then the reverse sweep's adjoint)", e.tape, "adjoint ∂f/∂v")
    if e.nested is not None:
        table(f"outer tape: it recorded f and the inner sweep (∂f/∂{e.wrt[0]})", e.nested,
              f"adjoint ∂(∂f/∂{e.wrt[0]})/∂v")
    if e.nested_note:
        console.print(escape(e.nested_note))
    if e.taylor_var is not None and e.taylor:
        k = len(e.taylor[0][2])
        title = f"Taylor mode: normalized coefficients c_k = v^(k)/k! of each node along {e.taylor_var}"

        def taylor_table(cols: range) -> Any:
            t = Table(title=title, title_justify="left", pad_edge=False)
            t.add_column("node", no_wrap=True)
            t.add_column("op", no_wrap=True)
            for j in cols:
                t.add_column(f"c{j}", justify="right", no_wrap=True)
            for node, op, coeffs in e.taylor:
                t.add_row(escape(node), escape(op), *(repr(coeffs[j]) for j in cols))
            return t

        # never cut a number: as many coefficient columns per table as the width holds (at least one)
        per = k
        cells = [[node, op, *(repr(c) for c in coeffs)] for node, op, coeffs in e.taylor]
        widths = [max(len(r[j]) for r in cells + [["node", "op", *(f"c{i}" for i in range(k))]])
                  for j in range(k + 2)]

        def needed(n: int) -> int:  # one column's cell, its padding and a rule: 3 more characters
            return sum(w + 3 for w in widths[: 2 + n]) + 1

        while per > 1 and needed(per) > console.width:
            per -= 1
        for lo in range(0, k, per):
            console.print(taylor_table(range(lo, min(lo + per, k))))
