"""Grids without a file: ``--at x=0:1:0.1`` (start:stop:step) or ``--at x=linspace(0,1,11)``.

A grid is evaluated through the ``--points`` path: :class:`GridReader` yields the
:class:`~gradcli.commands.Chunk` records a :class:`~gradcli.points.PointsReader` would produce for a
file holding the same rows, with the rows numbered 1, 2, ... (the grid's own index). Several grids
make their Cartesian product (the first one named varies slowest). Grid values are exact where the
bounds are: ``0:1:0.1`` gives 0.3 (the double nearest 3/10), not 0.30000000000000004.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
import sympy

from . import ops
from .errors import InputError

__all__ = ["Sweep", "split_sweeps", "GridReader", "MAX_GRID_POINTS"]

#: The largest grid one command evaluates (a longer sweep is a file's job: ``--points``).
MAX_GRID_POINTS = 10_000_000
#: Rows per chunk (as a large ``--points`` chunk).
CHUNK_ROWS = 50_000

_LINSPACE = re.compile(r"\s*linspace\s*\((.*)\)\s*", re.S)


@dataclass(frozen=True, slots=True)
class Sweep:
    """One variable's grid: ``count`` points ``start + i*step`` (exact sympy constants)."""

    name: str
    start: sympy.Expr
    step: sympy.Expr
    count: int
    text: str

    def values(self, bk: ops.Backend) -> np.ndarray:
        """The grid as a backend array: correctly rounded for rational bounds."""
        i = np.arange(self.count)
        if bk.is_mp:
            start, step = bk.scalar(self.start), bk.scalar(self.step)
            return np.array([start + int(k) * step for k in i], dtype=object)
        if self.start.is_Rational and self.step.is_Rational:
            a, b = Fraction(str(self.start)), Fraction(str(self.step))
            den = math.lcm(a.denominator, b.denominator)
            num_a, num_b = a.numerator * (den // a.denominator), b.numerator * (den // b.denominator)
            biggest = abs(num_a) + abs(num_b) * max(self.count - 1, 0)
            if biggest < 2**53 and den < 2**53:  # exact integers, one correctly rounded division
                return (num_a + i * float(num_b)) / float(den)
            return np.array([float(a + int(k) * b) for k in i])
        with mpmath.workdps(30):
            start, step = mpmath.mpf(sympy.N(self.start, 30)), mpmath.mpf(sympy.N(self.step, 30))
            return np.array([float(start + int(k) * step) for k in i])


def _constant(text: str, what: str) -> sympy.Expr:
    from .parse import parse_constant

    return parse_constant(text, what=what)


def _top_level(text: str, sep: str) -> list[str]:
    from .parse import _split_top_level

    return _split_top_level(text, sep)


def _count(span: sympy.Expr, step: sympy.Expr, what: str) -> int:
    """Points in start..stop by step, stop included when it is on the grid (as ``seq``)."""
    ratio = sympy.N(span / step, 30)
    if ratio < 0:
        raise InputError(f"{what}: the step goes away from the stop (use a {'negative' if span < 0 else 'positive'} "
                         "step)")
    n = int(mpmath.floor(mpmath.mpf(ratio) + mpmath.mpf("1e-9"))) + 1
    if n > MAX_GRID_POINTS:
        raise InputError(f"{what}: {n} points, over the limit {MAX_GRID_POINTS} (use --points with a file)")
    return n


def parse_sweep(name: str, text: str) -> Sweep | None:
    """``start:stop:step`` or ``linspace(a,b,n)`` as a :class:`Sweep`; None for an ordinary value."""
    what = f"--at {name}"
    m = _LINSPACE.fullmatch(text)
    if m:
        args = _top_level(m.group(1), ",")
        if len(args) != 3:
            raise InputError(f"{what}: linspace takes three values (start, stop, count), got {len(args)}")
        a, b = _constant(args[0], what), _constant(args[1], what)
        try:
            n = int(args[2].strip())
        except ValueError:
            raise InputError(f"{what}: linspace's count must be a whole number, got '{args[2].strip()}'") from None
        if not 2 <= n <= MAX_GRID_POINTS:
            raise InputError(f"{what}: linspace's count must be from 2 to {MAX_GRID_POINTS}, got {n}")
        return Sweep(name, a, (b - a) / (n - 1), n, text.strip())
    parts = _top_level(text, ":")
    if len(parts) == 1:
        return None
    if len(parts) != 3:
        raise InputError(f"{what}: a grid is START:STOP:STEP (three values), got '{text.strip()}'")
    a, b, step = (_constant(p, what) for p in parts)
    if sympy.N(step, 30) == 0:
        raise InputError(f"{what}: the grid's step must not be 0")
    return Sweep(name, a, step, _count(b - a, step, what), text.strip())


def split_sweeps(spec: str) -> tuple[str, dict[str, Sweep]]:
    """Take the grid items out of an ``--at`` spec: the remaining spec (for ``parse_at``) and the grids.

    >>> rest, grids = split_sweeps("x=0:1:0.25,y=2")
    >>> rest, grids["x"].count
    ('y=2', 5)
    """
    rest, grids = [], {}
    for item in _top_level(spec, ","):
        parts = _top_level(item, "=")
        if len(parts) == 2:
            grid = parse_sweep(parts[0].strip(), parts[1])
            if grid is not None:
                if grid.name in grids:
                    raise InputError(f"--at: '{grid.name}' given twice")
                grids[grid.name] = grid
                continue
        rest.append(item)
    return ",".join(rest), grids


class GridReader:
    """The chunks of a grid (the Cartesian product of ``grids``), as ``PointsReader`` yields them for a
    file; the other needed variables come from ``defaults`` (``--at``)."""

    def __init__(self, grids: Sequence[Sweep], needed: Sequence[str], defaults: dict[str, Any],
                 bk: ops.Backend) -> None:
        from .points import PointsReader

        self.grids, self.bk = list(grids), bk
        self.total: int | None = None  # no progress bar: nothing is read
        self.bytes_read = 0
        self.size = math.prod(g.count for g in self.grids)
        if self.size > MAX_GRID_POINTS:
            raise InputError(f"--at: the grids make {self.size} points, over the limit {MAX_GRID_POINTS}")
        self._base = PointsReader(io.BytesIO(b""), needed, defaults, bk, name="--at")

    def __iter__(self) -> Iterator[Any]:
        axes = [g.values(self.bk) for g in self.grids]
        if len(axes) == 1:
            flat = {self.grids[0].name: axes[0]}
        else:
            mesh = np.meshgrid(*axes, indexing="ij") if not self.bk.is_mp else None
            if mesh is not None:
                flat = {g.name: m.reshape(-1) for g, m in zip(self.grids, mesh)}
            else:
                rows = list(itertools.product(*axes))
                flat = {g.name: np.array([r[j] for r in rows], dtype=object) for j, g in enumerate(self.grids)}
        for lo in range(0, self.size, CHUNK_ROWS):
            hi = min(lo + CHUNK_ROWS, self.size)
            yield self._base.chunk({k: v[lo:hi] for k, v in flat.items()}, range(lo + 1, hi + 1))
