"""``gradcli plot``: f and its derivatives over a range, drawn in the terminal (uniplot) or written as
a figure (matplotlib, the optional extra ``gradcli[plot]``), or the grid itself as CSV or JSON.

The values come from the one evaluation path (:func:`gradcli.commands.evaluate_block`): a ``taylor``
job of the highest requested order over the whole grid, vectorised, every row certified (the
estimate, a sample and balls where needed). A grid point outside the domain, or whose value could not
be certified, is a gap (NaN), never an error: ``log(x)`` over -1:2 is drawn where it exists. Near a
pole the values leave any useful scale, so the drawn y-range is the robust range of the values and
points far outside it are not drawn either (gaps, not spikes to infinity); the CSV and JSON grids keep
every finite value.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["Grid", "evaluate_grid", "parse_range", "parse_orders", "terminal_plot", "write_figure", "grid_csv",
           "grid_json", "grid_plain", "label", "FIGURE_SUFFIXES"]

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
MAX_ORDER_PLOT = 50
MAX_PLOT_POINTS = 1_000_000


@dataclass(frozen=True, slots=True)
class Grid:
    """The evaluated grid: ``xs`` (P,), ``ys`` one array (P,) per order in ``orders`` (NaN: a gap)."""

    expr: str
    var: str
    orders: tuple[int, ...]
    at: dict[str, float]
    xs: np.ndarray
    ys: tuple[np.ndarray, ...]
    uncertified: int  # grid points dropped because no ball could prove their value
    #: the evaluated taylor block behind the grid (the JSON rows: each row's point, error, certificate)
    block: Any = field(default=None, repr=False, compare=False)


def label(k: int, var: str = "x") -> str:
    """f, f′, f″, f‴, then f⁽ᵏ⁾."""
    from .commands import superscript

    return ["f", "f′", "f″", "f‴"][k] if k < 4 else f"f⁽{superscript(k)}⁾"


def parse_range(text: str) -> tuple[float, float]:
    """``A:B`` with constant bounds (``-pi:pi``), A < B.

    >>> parse_range("-1:2")
    (-1.0, 2.0)
    """
    from .parse import parse_constant

    parts = text.split(":")
    if len(parts) != 2:
        raise InputError(f"--range: expected A:B (two constants, e.g. -1:2 or 0:2*pi), got '{text}'")
    a, b = (float(parse_constant(p, what="--range")) for p in parts)
    if not a < b:
        raise InputError(f"--range: A must be below B, got {a!r}:{b!r}")
    return a, b


def parse_orders(text: str) -> tuple[int, ...]:
    """``0,1,2`` (derivative orders, 0 is f itself; duplicates dropped, order kept).

    >>> parse_orders("0,2,1")
    (0, 2, 1)
    """
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) > MAX_ORDER_PLOT:
            raise InputError(f"--orders: expected orders from 0 to {MAX_ORDER_PLOT}, comma-separated, got '{part}'")
        if int(part) not in out:
            out.append(int(part))
    return tuple(out)


def evaluate_grid(expr: str, var: str | None, orders: tuple[int, ...], lo: float, hi: float, points: int,
                  at: dict[str, Any] | None = None, *, tol: float = 1e-8) -> Grid:
    """f^(k) for every k in ``orders`` at ``points`` evenly spaced values of ``var`` from lo to hi.

    >>> g = evaluate_grid("x**3", "x", (0, 1, 2), 0.0, 2.0, 3)
    >>> g.xs.tolist(), [y.tolist() for y in g.ys]
    ([0.0, 1.0, 2.0], [[0.0, 1.0, 8.0], [0.0, 3.0, 12.0], [0.0, 6.0, 12.0]])
    """
    from . import ops
    from .commands import Chunk, Job, evaluate_block
    from .derive import point_arrays, prepare, resolve_wrt

    if not 2 <= points <= MAX_PLOT_POINTS:
        raise InputError(f"--points must be from 2 to {MAX_PLOT_POINTS}, got {points}")
    prep = prepare(expr)
    names, _ = resolve_wrt(prep, var)
    if len(names) != 1:
        raise InputError("--wrt must name one variable for plot (the horizontal axis)")
    var = names[0]
    at = dict(at or {})
    if var in at:
        raise InputError(f"--at gives '{var}', the plotted variable (its values come from --range)")
    for name in at:
        if name not in prep.variables:
            raise InputError(f"--at names '{name}', which is not in EXPR")
    missing = [v for v in prep.variables if v != var and v not in at]
    if missing:
        raise InputError(f"--at is missing a value for {', '.join(repr(m) for m in missing)}")
    xs = np.linspace(lo, hi, points)
    job = Job("taylor", (prep,), (var,), ops.F64, check=False, tol=tol, order=max(orders))
    values, n = point_arrays({**at, var: xs}, ops.F64)
    block = evaluate_block(job, Chunk(values, n, tuple(range(1, n + 1))))
    vals = np.array(block.values, dtype=np.float64)
    gaps = np.array(block.bad, copy=True)
    bad_certs = block.uncertified
    gaps[bad_certs] = True
    vals[gaps] = np.nan
    with np.errstate(all="ignore"):
        vals[~np.isfinite(vals)] = np.nan
    return Grid(expr, var, tuple(orders), {k: float(ops.F64.scalar(v)) for k, v in at.items()}, xs,
                tuple(vals[:, k].copy() for k in orders), len(bad_certs), block)


def _y_limits(ys: tuple[np.ndarray, ...]) -> tuple[float, float] | None:
    """The drawn y-range: all finite values, unless a few (near a pole) stretch it far beyond the
    bulk; then the bulk (5th to 95th percentile) with a margin."""
    finite = np.concatenate([y[np.isfinite(y)] for y in ys]) if ys else np.array([])
    if finite.size == 0:
        return None
    lo, hi = float(finite.min()), float(finite.max())
    q_lo, q_hi = (float(v) for v in np.percentile(finite, [5, 95]))
    span = q_hi - q_lo
    if span > 0 and hi - lo > 3 * span:
        lo, hi = max(lo, q_lo - 0.5 * span), min(hi, q_hi + 0.5 * span)
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    return lo, hi


def _clipped(ys: tuple[np.ndarray, ...], limits: tuple[float, float] | None) -> list[np.ndarray]:
    """Values far outside the drawn range become gaps, so a pole is not a vertical streak."""
    if limits is None:
        return [y.copy() for y in ys]
    lo, hi = limits
    pad = hi - lo
    out = []
    for y in ys:
        y = y.copy()
        with np.errstate(invalid="ignore"):
            y[(y < lo - pad) | (y > hi + pad)] = np.nan
        out.append(y)
    return out


def terminal_plot(grid: Grid, width: int = 80, height: int = 20, *, color: bool = False) -> str:
    """The plot as text (uniplot's block characters), ``width`` columns in all."""
    import uniplot

    limits = _y_limits(grid.ys)
    ys = _clipped(grid.ys, limits)
    labels = [label(k, grid.var) for k in grid.orders]
    if limits is None:
        return f"{grid.expr}: no finite value over {grid.xs[0]!r}:{grid.xs[-1]!r}\n"
    kw: dict[str, Any] = {"y_min": limits[0], "y_max": limits[1]}
    # uniplot's axis labels take some 10 columns beside the plot's frame
    text = uniplot.plot_to_string(ys, xs=[grid.xs] * len(ys), lines=True, legend_labels=labels,
                                  title=f"{grid.expr}  ({grid.var} from {grid.xs[0]:g} to {grid.xs[-1]:g})",
                                  width=max(width - 14, 10), height=max(height, 4), color=color, **kw)
    if isinstance(text, list):
        text = "\n".join(text)
    return text.rstrip("\n") + "\n"


def write_figure(grid: Grid, path: str, *, width: float = 8.0, height: float = 5.0, dpi: int = 150) -> None:
    """The figure (PNG, SVG or PDF by ``path``'s suffix), written atomically: legend, axis labels,
    the expression as the title; gaps where the function or a derivative is not defined."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FIGURE_SUFFIXES:
        raise InputError(f"--output: '{path}' must end in .png, .svg or .pdf")
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--output needs matplotlib: pip install 'gradcli[plot]'") from None
    limits = _y_limits(grid.ys)
    ys = _clipped(grid.ys, limits)
    fig, ax = plt.subplots(figsize=(width, height), dpi=dpi, layout="constrained")
    try:
        for k, y in zip(grid.orders, ys):
            name = {0: f"f({grid.var})"}.get(k, f"{label(k)}({grid.var})" if k < 4 else f"d{k}f/d{grid.var}{k}")
            ax.plot(grid.xs, y, label=name, linewidth=1.6)
        if limits is not None:
            pad = 0.05 * (limits[1] - limits[0])
            ax.set_ylim(limits[0] - pad, limits[1] + pad)
        ax.axhline(0, color="0.6", linewidth=0.8)
        ax.grid(True, alpha=0.3)
        ax.set_xlim(grid.xs[0], grid.xs[-1])
        ax.set_xlabel(grid.var)
        ax.set_ylabel("value")
        others = ", ".join(f"{k} = {v:g}" for k, v in grid.at.items())
        ax.set_title(f"f({grid.var}) = {grid.expr}" + (f"   ({others})" if others else ""))
        ax.legend()
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".gradcli-", suffix=suffix, dir=folder)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0600
        try:
            fig.savefig(tmp, format=suffix[1:])
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    finally:
        plt.close(fig)


def _cell(v: float) -> str:
    return "" if math.isnan(v) else repr(float(v))


def grid_csv(grid: Grid) -> str:
    """A header (the variable, then d0, d1, ... for the orders), one row per grid point; a gap is empty.

    >>> print(grid_csv(evaluate_grid("x**2", "x", (0, 1), 0.0, 1.0, 2)), end="")
    x,d0,d1
    0.0,0.0,0.0
    1.0,1.0,2.0
    """
    lines = [",".join([grid.var, *(f"d{k}" for k in grid.orders)])]
    for i, x in enumerate(grid.xs):
        lines.append(",".join([repr(float(x)), *(_cell(y[i]) for y in grid.ys)]))
    return "\n".join(lines) + "\n"


def grid_plain(grid: Grid) -> str:
    """One line per grid point: the variable, then one value per order (``repr(float)``; nan: a gap)."""
    return "".join(" ".join([repr(float(x)), *(repr(float(y[i])) for y in grid.ys)]) + "\n"
                   for i, x in enumerate(grid.xs))


def grid_json(grid: Grid) -> str:
    """One JSON object per grid point, in the one schema every command writes (README "JSON schema"):
    ``command`` "plot", ``at`` the point, ``value`` [f, f′, ..., f⁽ᴷ⁾] up to the highest requested order
    K (``order``), ``line`` the point's number from 1, ``coefficients`` null. A gap has null values and
    its reason in ``error``; ``check`` is the certificate (plot runs no symbolic witness).

    >>> print(grid_json(evaluate_grid("x**2", "x", (0, 1), 0.0, 1.0, 2)).splitlines()[1][:99])
    {"command": "plot", "expr": ["x**2"], "wrt": "x", "order": 1, "at": {"x": 1.0}, "value": [1.0, 2.0]
    """
    from .render import Renderer

    block = grid.block
    renderer = Renderer(block.job, "json", io.StringIO())
    uncertified = set(block.uncertified)
    lines = []
    for i in range(block.chunk.size):
        obj = renderer.json_object(block.row(i))
        obj["command"], obj["coefficients"] = "plot", None
        if i in uncertified:  # drawn as a gap: no value is given that no ball proved
            obj["value"] = [None] * len(obj["value"])
            obj["error"] = "the value could not be certified here (a gap in the plot)"
        obj["check"]["skipped"] = "plot runs no symbolic check"
        lines.append(json.dumps(obj, allow_nan=False, ensure_ascii=False))
    return "\n".join(lines) + "\n"
