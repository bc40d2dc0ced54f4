"""What a run tells stderr about its rows, gathered without printing: the one place for the notes of
``--points`` (on one machine and on a Dask cluster) and of a single point.

:func:`row_notes` is what one row says (a failed check, a value no ball proved, a value the certificate
replaced, a skipped check); :class:`Findings` gathers a run's rows chunk by chunk (the first
:data:`MAX_NOTES` rows named, the rest counted; rows outside the domain; skipped checks per reason) and
merges in input order, which is how a Dask run's pieces come back to the client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import NotFinite

__all__ = ["Findings", "MAX_NOTES", "row_notes", "row_failed", "expect_failed", "expect_text"]

#: At most this many rows are named on stderr for the per-row findings (check, certificate, --expect);
#: the rest are counted.
MAX_NOTES = 10


def row_notes(row: Any, tol: float, digits: int | None = None) -> tuple[str, ...]:
    """What one row says: its entries that failed the check, the reasons its check was skipped, a value
    no ball proved, or that float64's value was replaced by the certified one."""
    from .render import number

    where = f"line {row.line}: " if row.line is not None else ""
    out = [f"{where}check failed: the engine's value disagrees with {c.method} "
           f"({number(c.value if digits else float(c.value), digits)}), rel_err {c.rel_err:.3g} > --tol {tol:g}"
           for c in row.checks or [] if c.ok is False]
    out += [f"{where}note: symbolic check skipped ({why}); the value stands on its ball-arithmetic certificate"
            for why in sorted({c.skipped for c in row.checks or [] if c.skipped})]
    certs = row.certs or []
    failed = next((c for c in certs if not c.ok), None)
    replaced = [c for c in certs if c.replaced]
    if failed is not None:
        out.append(f"{where}error: the value could not be certified: {failed.reason}")
    elif replaced:
        out.append(f"{where}note: float64 lost digits here; the printed value is the certified one "
                   f"(ball arithmetic at {max(c.bits or 0 for c in replaced)} bits)")
    return tuple(out)


def row_failed(row: Any) -> bool:
    """True when the row's check disagreed or no ball proved one of its values (exit 1)."""
    return row.check_ok is False or any(not c.ok for c in row.certs or [])


@dataclass
class Findings:
    """What a run's rows tell stderr, gathered chunk by chunk: the notes of the first :data:`MAX_NOTES`
    rows that failed the check, their certificate or --expect (one tuple of lines per row, in input
    order), how many rows failed in all, how many values were replaced by the certified ones, the rows
    whose symbolic check was skipped (per reason), and the first row outside the domain. Plain data: a
    Dask piece returns it, and the client merges the pieces' in input order."""

    failed: int = 0
    notes: list[tuple[str, ...]] = field(default_factory=list)
    replaced: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    bad: int = 0
    first_error: str | None = None

    def add(self, block: Any, where: Callable[[int], str], tol: float, expected: Any,
            digits: int | None = None) -> list[tuple[str, ...]]:
        """One chunk's findings (``where(i)`` names row ``i``: its line, or its file and row; ``expected``:
        --expect's value or entries); returns the notes this chunk adds."""
        before = len(self.notes)
        if self.first_error is None and block.bad.any():
            i = int(np.argmax(block.bad))
            self.first_error = f"{where(i)}: {block.error(i).message}"
        self.bad += int(block.bad.sum())
        _count_skipped(block, self.skipped)
        failed = block.check_failed
        failed[block.uncertified] = True  # no ball proved these values (exit 1)
        self.replaced += sum(1 for row in block.certs.values() if any(c.replaced for c in row))
        for i in np.flatnonzero(failed)[: max(MAX_NOTES - len(self.notes), 0)]:
            self.notes.append(row_notes(block.row(int(i)), tol, digits))
        if expected is not None:
            off = expect_failed(block, expected, tol)
            for i in np.flatnonzero(off)[: max(MAX_NOTES - len(self.notes), 0)]:
                self.notes.append((f"line {block.chunk.lines[i]}: --expect failed: "
                                   f"{expect_text(block.values[i], expected, tol)}",))
            failed = failed | off
        self.failed += int(failed.sum())
        return self.notes[before:]

    def merge(self, later: Findings) -> list[tuple[str, ...]]:
        """Add the findings of the rows that follow; returns the notes to say now (up to MAX_NOTES rows)."""
        new = later.notes[: max(MAX_NOTES - len(self.notes), 0)]
        self.notes += new
        self.failed += later.failed
        self.replaced += later.replaced
        for why, count in later.skipped.items():
            self.skipped[why] = self.skipped.get(why, 0) + count
        self.bad += later.bad
        self.first_error = self.first_error or later.first_error
        return new

    def finish(self, note: Callable[[str], None]) -> int:
        """The closing notes; raises NotFinite naming the first row outside the domain (exit 3), else the
        exit code (1 if a row failed the check, its certificate or --expect)."""
        named = len(self.notes)
        if self.failed > named:
            note(f"{self.failed} rows failed the check or --expect in all (the first {named} are named above)")
        if self.replaced:
            note(f"note: float64 lost digits in {self.replaced} row{'s' if self.replaced > 1 else ''}; "
                 "their printed values are the certified ones (ball arithmetic)")
        for why, count in self.skipped.items():
            note(f"note: check skipped for {count} row{'s' if count > 1 else ''}: {why} "
                 "(their values stand on their certificates)")
        if self.first_error is not None:
            more = f" ({self.bad} such rows in all)" if self.bad > 1 else ""
            raise NotFinite(f"{self.first_error}{more}")
        return 1 if self.failed else 0


def _count_skipped(block: Any, seen: dict[str, int]) -> None:
    """Rows whose symbolic check was skipped, per reason."""
    for batch in block.checks or []:
        for c in (batch[i] for i in batch.single):
            if c is not None and c.skipped:
                seen[c.skipped] = seen.get(c.skipped, 0) + 1
        if batch.skipped[0]:
            unchecked = (batch.status < 0) & ~batch.excluded
            unchecked[list(batch.single)] = False
            if unchecked.any():
                seen[batch.skipped[0]] = seen.get(batch.skipped[0], 0) + int(unchecked.sum())


def expect_failed(block: Any, expected: Any, tol: float) -> np.ndarray:
    """Rows (inside the domain) whose value misses --expect (any entry, for a vector or matrix)."""
    from .check import close, rel_err_many

    n = block.chunk.size
    flat = block.values.reshape(n, -1)
    off = np.zeros(n, dtype=bool)
    for j, e in enumerate(expected if isinstance(expected, list) else [expected]):
        if flat.dtype == object:
            off |= np.array([not close(v, e, tol) for v in flat[:, j]], dtype=bool)
        else:
            off |= rel_err_many(flat[:, j], np.full(n, float(e))) > tol
    return off & ~block.bad


def expect_text(value: Any, expected: Any, tol: float) -> str:
    """The --expect message for one row: its first entry that misses."""
    from .commands import expect_mismatch

    if not isinstance(expected, list):
        return expect_mismatch(value, expected, tol) or ""
    for k, (v, e) in enumerate(zip(np.asarray(value, dtype=object).reshape(-1), expected), start=1):
        bad = expect_mismatch(v, e, tol)
        if bad:
            return f"entry {k}: {bad}"
    return ""
