"""Rows to text: a rich table for people; plain, JSON lines and CSV for programs.

A :class:`Renderer` writes to the stream it is given, one row at a time (so output streams), and
imports rich only for the table.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, TextIO

import mpmath

from .check import CheckResult
from .commands import Block, Job, Row

__all__ = ["Renderer", "number", "json_number"]


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


def _oracle_json(v: Any, digits: int | None) -> Any:
    """The oracle's value in the run's precision: a float in float64, N digits with --digits."""
    if v is None:
        return None
    return json_number(v, digits) if digits else json_number(float(v), None)


def _nested(v: Any, fn: Any) -> Any:
    return [_nested(x, fn) for x in v] if isinstance(v, list) else fn(v)


def _json_float(v: float | None) -> float | None:
    """A float JSON can carry: an infinite rel_err (the oracle's value was nan) becomes null."""
    return v if v is None or math.isfinite(v) else None


def _check_json(checks: list[CheckResult] | None, vector: bool, digits: int | None) -> Any:
    if checks is None:
        return None
    def one(c: CheckResult) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if c.ok is None and c.value is None:
            return {"ok": None, "skipped": c.skipped}
        out["symbolic"] = c.symbolic
        out["value"] = _oracle_json(c.value, digits)
        out["rel_err"] = _json_float(c.rel_err)
        out["ok"] = c.ok
        if c.skipped:
            out["skipped"] = c.skipped
            out["method"] = c.method
        return out

    if not vector:
        return one(checks[0])
    parts = [one(c) for c in checks]
    errs = [c.rel_err for c in checks if c.rel_err is not None]
    oks = [c.ok for c in checks]
    merged: dict[str, Any] = {
        "symbolic": [p.get("symbolic") for p in parts],
        "value": [p.get("value") for p in parts],
        "rel_err": _json_float(max(errs)) if errs else None,
        "ok": False if False in oks else (True if all(o is True for o in oks) else None),
    }
    skipped = [c.skipped for c in checks if c.skipped]
    if skipped:
        merged["skipped"] = skipped[0]
        # which check ran for each entry (None: none did), so no entry claims a check that did not run
        merged["method"] = [None if c.ok is None and c.value is None else c.method for c in checks]
    return merged


class Renderer:
    """Writes a job's rows in one format to one stream."""

    def __init__(self, job: Job, fmt: str, stream: TextIO, *, show_symbolic: bool = False,
                 variables: list[str] | None = None, color: bool | None = None) -> None:
        self.job, self.fmt, self.stream = job, fmt, stream
        self.show_symbolic = show_symbolic
        self.variables = variables or []
        self.color = color
        self._rows: list[Row] = []
        self._csv: Any = None

    # -- shape of values -----------------------------------------------------------------------------
    @property
    def _vector(self) -> bool:
        return self.job.command != "d"

    def _symbolic(self) -> list[str | None]:
        job = self.job
        from .commands import _entries

        return [job.oracle(key, prep, wrt).symbolic_text for key, prep, wrt in _entries(job)]

    # -- per format ----------------------------------------------------------------------------------
    def row(self, row: Row) -> None:
        getattr(self, f"_row_{self.fmt}")(row)

    def close(self) -> None:
        if self.fmt == "table":
            self._table()
        self.stream.flush()

    def block(self, block: Block) -> None:
        """Write one chunk of ``--points`` rows and flush, so output streams: plain float64 values in one
        vectorised pass (``repr(float)``, as :meth:`row` writes them), a table per chunk, other formats
        row by row. A row outside the domain reads ``nan`` (JSON: null, with "error")."""
        if self.fmt == "plain" and not self.show_symbolic and block.values.dtype != object:
            self.stream.write(_plain_block(block))
        elif self.fmt == "table":
            self._points_table(block)
        else:
            for i in range(block.chunk.size):
                self.row(block.row(i))
        self.stream.flush()

    def _points_table(self, block: Block) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        console = Console(file=self.stream, color_system="auto" if self.color is not False else None,
                          force_terminal=self.color, highlight=False)
        job, d = self.job, self.job.digits
        table = Table(title=escape("f = " + ", ".join(p.text for p in job.preps)), title_justify="left")
        table.add_column("line", justify="right", style="dim")
        for v in self.variables:
            table.add_column(escape(v), justify="right")
        for label in self._row_labels():
            table.add_column(escape(label), justify="right")
        if job.check:
            table.add_column("check", justify="center")
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
            table.add_row(*cells)
        console.print(table)

    def _flat(self, value: Any) -> list[Any]:
        if isinstance(value, list):
            return [x for v in value for x in self._flat(v)]
        return [value]

    def _row_plain(self, row: Row) -> None:
        d = self.job.digits
        line = " ".join(number(v, d) for v in self._flat(row.value))
        if self.job.command == "taylor":
            line += "\n" + " ".join(number(v, d) for v in self._flat(row.extra["coefficients"]))
        self.stream.write(line + "\n")
        if self.show_symbolic:
            self.stream.write(" ".join(s or "?" for s in self._symbolic()) + "\n")

    def _row_json(self, row: Row) -> None:
        job, d = self.job, self.job.digits
        obj: dict[str, Any] = {
            "expr": job.preps[0].text if job.command != "jacobian" else [p.text for p in job.preps],
            "wrt": list(job.wrt),
            "at": {k: json_number(v, d) for k, v in row.at.items()},
            "value": _nested(row.value, lambda v: json_number(v, d)),
        }
        if job.command == "taylor":
            obj["order"] = job.order
            obj["coefficients"] = _nested(row.extra["coefficients"], lambda v: json_number(v, d))
        if row.line is not None:
            obj["line"] = row.line
        if row.error is not None:  # a --points row outside the domain: "value" is null
            obj["error"] = row.error.message
        obj["check"] = _check_json(row.checks, self._vector, d)
        if self.show_symbolic:
            sym = self._symbolic()
            obj["symbolic"] = sym[0] if not self._vector else sym
        self.stream.write(json.dumps(obj, allow_nan=False, ensure_ascii=False) + "\n")

    def _csv_header(self) -> list[str]:
        labels = self._entry_names()
        head = list(self.variables) + labels
        if self.job.check:
            head += ["check_ok", "check_rel_err"]
        if self.show_symbolic:
            head += [f"symbolic_{n}" if len(labels) > 1 else "symbolic" for n in labels]
        return head

    def _entry_names(self) -> list[str]:
        job = self.job
        if job.command == "d":
            return ["value"]
        if job.command == "grad":
            return [f"d_{w}" for w in job.wrt]
        if job.command == "hessian":
            return [f"d_{a}_{b}" for a in job.wrt for b in job.wrt]
        if job.command == "jacobian":
            return [f"d{i}_{w}" for i in range(len(job.preps)) for w in job.wrt]
        return [f"d{k}" for k in range(job.order + 1)] + [f"c{k}" for k in range(job.order + 1)]

    def _row_csv(self, row: Row) -> None:
        d = self.job.digits
        if self._csv is None:
            self._csv = csv.writer(self.stream, lineterminator="\n")
            self._csv.writerow(self._csv_header())
        cells = [number(row.at[v], d) if v in row.at else "" for v in self.variables]
        cells += [number(v, d) for v in self._flat(row.value)]
        if self.job.command == "taylor":
            cells += [number(v, d) for v in self._flat(row.extra["coefficients"])]
        if self.job.check:
            ok = row.check_ok
            errs = [c.rel_err for c in (row.checks or []) if c.rel_err is not None]
            cells += ["" if ok is None else str(ok).lower(), repr(max(errs)) if errs else ""]
        if self.show_symbolic:
            cells += [s or "" for s in self._symbolic()]
        self._csv.writerow(cells)

    def _row_table(self, row: Row) -> None:
        self._rows.append(row)

    # -- the rich table --------------------------------------------------------------------------------
    def _table(self) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        console = Console(file=self.stream, color_system="auto" if self.color is not False else None,
                          force_terminal=self.color, highlight=False)
        job, d = self.job, self.job.digits
        exprs = ", ".join(p.text for p in job.preps)
        for row in self._rows:
            where = ", ".join(f"{k} = {number(v, d)}" for k, v in row.at.items())
            title = escape(f"f = {exprs}" + (f"  at  {where}" if where else ""))
            if job.command in ("hessian", "jacobian"):
                for table in self._matrix_tables(row, title):
                    console.print(table)
                continue
            table = Table(title=title, title_justify="left")
            labels = self._row_labels()
            table.add_column("derivative", style="bold")
            table.add_column("value", justify="right")
            if job.check:
                table.add_column("symbolic value", justify="right")
                table.add_column("check", justify="center")
            if self.show_symbolic:
                table.add_column("symbolic derivative")
            flat = self._flat(row.value)
            coeffs = self._flat(row.extra.get("coefficients", [])) if job.command == "taylor" else None
            if coeffs is not None:
                table.add_column("coefficient f⁽ᵏ⁾/k!", justify="right")
            symbolic = self._symbolic() if self.show_symbolic else []
            for i, (label, v) in enumerate(zip(labels, flat)):
                cells = [escape(label), number(v, d)]
                if job.check:
                    c = row.checks[i] if row.checks else None
                    oracle = c.value if c is not None else None
                    shown = "—" if oracle is None else number(oracle if d else float(oracle), d)
                    cells += [shown, _mark(c)]
                if self.show_symbolic:
                    cells.append(escape(symbolic[i] or "?"))
                if coeffs is not None:
                    cells.append(number(coeffs[i], d))
                table.add_row(*cells)
            notes = {c.skipped for c in (row.checks or []) if c.skipped}
            if notes:
                table.caption = escape("; ".join(sorted(notes)))
            console.print(table)

    def _matrix_tables(self, row: Row, title: str) -> list[Any]:
        """A Hessian or Jacobian as a matrix: a row per gradient entry (per expression), a column per
        variable; each cell the value and its check mark (with sympy's value when they disagree).
        With --show-symbolic, a second matrix holds the symbolic derivatives."""
        from rich.markup import escape
        from rich.table import Table

        job, d = self.job, self.job.digits
        rows, cols = self._matrix_labels()
        corner = "∂²f" if job.command == "hessian" else "J"
        values = Table(title=title, title_justify="left")
        values.add_column(corner, style="bold")
        for c in cols:
            values.add_column(escape(c), justify="right")
        for i, (label, entries) in enumerate(zip(rows, row.value)):
            cells = [escape(label)]
            for j, v in enumerate(entries):
                text = number(v, d)
                check = row.checks[i * len(cols) + j] if row.checks else None
                if job.check:
                    text += " " + _mark(check)
                    if check is not None and check.ok is False and check.value is not None:
                        text += f" (sympy {number(check.value if d else float(check.value), d)})"
                cells.append(text)
            values.add_row(*cells)
        notes = {c.skipped for c in (row.checks or []) if c.skipped}
        if notes:
            values.caption = escape("; ".join(sorted(notes)))
        tables = [values]
        if self.show_symbolic:
            symbolic = self._symbolic()
            sym = Table(title="symbolic derivatives", title_justify="left")
            sym.add_column(corner, style="bold")
            for c in cols:
                sym.add_column(escape(c))
            for i, label in enumerate(rows):
                sym.add_row(escape(label), *(escape(symbolic[i * len(cols) + j] or "?") for j in range(len(cols))))
            tables.append(sym)
        return tables

    def _matrix_labels(self) -> tuple[list[str], list[str]]:
        """Row and column labels of a matrix table: entry (i, j) is d(row i)/d(column j)."""
        job = self.job
        cols = [f"∂/∂{w}" for w in job.wrt]
        if job.command == "hessian":
            return [f"∂f/∂{w}" for w in job.wrt], cols
        if len(job.preps) == 1:
            return [f"f = {job.preps[0].text}"], cols
        return [f"f{_sub(i + 1)} = {p.text}" for i, p in enumerate(job.preps)], cols

    def _row_labels(self) -> list[str]:
        job = self.job
        if job.command in ("d", "grad", "taylor"):
            return job.labels if job.command != "d" else [job.labels[0]]
        if job.command == "hessian":
            return [f"∂²f/∂{a}∂{b}" if a != b else f"∂²f/∂{a}²" for a in job.wrt for b in job.wrt]
        return [f"∂f{i + 1}/∂{w}" for i in range(len(job.preps)) for w in job.wrt]


def _sub(n: int) -> str:
    return str(n).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


def _mark(c: CheckResult | None) -> str:
    if c is None:
        return "—"
    if c.ok is None:
        return "[yellow]skipped[/]"
    if c.ok:
        return "[green]✓[/]" + (" (mpmath)" if c.method != "sympy" else "")
    return "[red]✗ MISMATCH[/]"


def render_to_string(job: Job, rows: list[Row], fmt: str, **kw: Any) -> str:
    """Render rows into a string (tests, and the Python API's pretty printing)."""
    buf = io.StringIO()
    r = Renderer(job, fmt, buf, **kw)
    for row in rows:
        r.row(row)
    r.close()
    return buf.getvalue()


def _plain_block(block: Block) -> str:
    """A chunk's float64 values in plain format: one line per row (taylor: two), ``repr(float)``."""
    n = block.chunk.size
    if n == 0:
        return ""
    flat = block.values.reshape(n, -1)
    if flat.shape[1] == 1:
        lines = list(map(repr, flat[:, 0].tolist()))
    else:
        lines = [" ".join(map(repr, r)) for r in flat.tolist()]
    if block.job.command == "taylor":
        coeffs = [" ".join(map(repr, r)) for r in block.extra["coefficients"].reshape(n, -1).tolist()]
        lines = [x for pair in zip(lines, coeffs) for x in pair]
    return "\n".join(lines) + "\n"
