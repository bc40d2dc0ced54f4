"""Certification: every value gradcli prints is enclosed by ball arithmetic (python-flint's arb).

The stage between the engines and the check. For each printed value it runs the ball engine
(:mod:`gradcli.ball`) at rising precision until a ball around the true derivative shows

* in float64 mode, that the printed value is within ``tol`` of the true one: float64's own value when
  it passes, otherwise the float64 nearest the ball's midpoint (``replaced``: float64 lost digits);
* with ``--digits N``, that both ends of the ball round to the same N significant digits, so that
  every printed digit is correct (the value is correctly rounded).

The rule for ``tol`` is ``|printed - true| <= tol * max(|true|, SMALL)``: relative, with an absolute
floor of ``tol * 1e-12`` for values within 1e-12 of zero (where a relative error means nothing). With
``--digits N`` a ball within 10^-(N+12) of zero prints as 0.

Precision starts at ``64 + 3 k / 4`` bits for order k (cancellation in Taylor coefficients costs about
half a bit per order) plus the digits asked for, and doubles up to :data:`MAX_DOUBLINGS` times. The
schedule is fixed, so the verdict never depends on how busy the machine is. A ball that stays
non-finite (a pole, kink or branch cut at or within the ball of the point, or a point outside the
domain) is a :class:`~gradcli.errors.NotFinite`; a finite ball that cannot be tightened enough is
reported with its enclosure (exit 1), or as "not differentiable" where a kink made it wide.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import mpmath
from flint import arb

from . import ball
from .graph import Graph

__all__ = ["Certificate", "Outcome", "Group", "certify", "SMALL", "MAX_DOUBLINGS"]

#: Values within this of zero compare absolutely (the same rule as ``check.close``).
SMALL = 1e-12
#: How many times the precision may double after the first run (bits x 32 at most).
MAX_DOUBLINGS = 5
#: A non-finite ball gets this many doublings before it is a verdict (a pole at pi/2 stays one).
NONFINITE_DOUBLINGS = 2
_FLOAT_MAX = arb(sys.float_info.max)


@dataclass(frozen=True, slots=True)
class Certificate:
    """What the ball engine proved about one printed value.

    ``ok`` is True when a ball encloses the true derivative and shows the printed value within
    ``--tol`` (or every one of the ``--digits`` printed digits correct). ``method`` is ``"ball"`` when
    this row went through the ball engine; for a row of many (``--points``, arrays) that was not sampled
    for a ball, ``"bound"`` when its rounding-error bound showed it within tol (the fused evaluator's, see
    :func:`beyond_bound`), ``"estimate"`` when the vectorised estimate of a second run at moved points did
    (:func:`estimate_flags`). ``replaced`` is True when float64's value was not
    confirmed and the printed value is the float64 nearest the ball's midpoint.
    """

    ok: bool
    method: str = "ball"
    bits: int | None = None
    radius: float | None = None
    mid: Any = None
    replaced: bool = False
    reason: str | None = None  # why ok is False (the enclosure, or why none could be had)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One entry's result: the value to print, its certificate, or why no value exists."""

    value: Any
    cert: Certificate
    error: str | None = None  # NotFinite message: undefined, not differentiable, or beyond float64
    culprit: int | None = None  # the graph node that failed, when known


@dataclass(frozen=True, slots=True)
class Group:
    """Entries one ball computation gives together: one derivative (``counts``), or every order of a
    Taylor expansion (``taylor`` = the variable; entries are orders 0..order)."""

    graph: Graph
    counts: dict[str, int]
    taylor: str | None = None

    @property
    def order(self) -> int:
        return sum(self.counts.values())

    @property
    def size(self) -> int:
        """How many outcomes :func:`certify` gives: the derivatives of orders 0..N and then the Taylor
        coefficients for a Taylor group (each certified on its own: a coefficient is not a rounded
        derivative over k!), else one."""
        return 2 * (self.order + 1) if self.taylor else 1

    def balls(self, point: dict[str, arb]) -> tuple[list[arb], int | None, int | None, list[list[arb]]]:
        """The entries as balls at the working precision, the failing node, whether a kink was met, and
        (with a kink) per entry the coefficients it needs (see :class:`~gradcli.ball.Enclosure`)."""
        if self.taylor is not None:
            enc = ball.univariate(self.graph, self.taylor, self.order, point)
            out, f = [], arb(1)
            coeffs = [ball.coeff(enc.value, k) for k in range(self.order + 1)]
            for k in range(self.order + 1):
                if k:
                    f *= k
                out.append(coeffs[k] * f)
            needed = [coeffs[: k + 1] for k in range(self.order + 1)]
            return out + coeffs, enc.culprit, enc.kink, needed + needed
        enc = ball.derivative(self.graph, self.counts, point)
        return [enc.value], enc.culprit, enc.kink, [list(enc.lower)]


#: Ball work is about (operations) x (series length) x (bits); FLINT does ~1e9 of it in one to two
#: seconds. A computation whose first precision is beyond MAX_WORK is refused (exit 2); the precision
#: stops doubling at RAISED_WORK (and the value is reported as uncertified, exit 1).
MAX_WORK = 2 * 10**9
RAISED_WORK = 16 * 10**9
#: arb's gamma family at thousands of digits takes seconds per point (10 s at 10,000 digits).
MAX_DIGITS_GAMMA = 1000


def _nops(graph: Graph) -> int:
    cache = ball.facts(graph)
    if "nops" not in cache:
        cache["nops"] = max(1, sum(1 for node in graph.nodes if node.op not in ("var", "const")))
    return cache["nops"]


def _work(group: Group, bits: int) -> int:
    nops = _nops(group.graph)
    dims = [c + 1 for c in group.counts.values()]
    length = math.prod(2 * d - 1 for d in dims[:-1]) * dims[-1] if len(dims) > 1 else group.order + 1
    return nops * length * max(1, len(dims)) * bits


def _vanishes(group: Group) -> bool:
    from .derive import degree

    cache = ball.facts(group.graph)
    for n, k in group.counts.items():
        if n not in group.graph.variables:
            return True
        if ("degree", n) not in cache:
            cache[("degree", n)] = degree(group.graph, n)
        if cache[("degree", n)] < k:
            return True
    return False


def check_work(group: Group, digits: int | None) -> None:
    """Refuse (exit 2) what the ball engine could not finish in seconds."""
    from .errors import InputError

    if digits and digits > MAX_DIGITS_GAMMA:
        from . import ops

        slow = sorted({node.op for node in group.graph.nodes
                       if node.op in ops.REGISTRY and ops.REGISTRY[node.op].slow_digits})
        if slow:
            raise InputError(f"--digits above {MAX_DIGITS_GAMMA} is not supported for {', '.join(slow)} "
                             "(seconds per point in ball arithmetic)")
    if _work(group, _start_bits(group.order, digits)) > MAX_WORK:
        if len(group.counts) > 1:
            spec = ",".join(f"{n}:{k}" for n, k in group.counts.items())
            raise InputError(f"the mixed partial {spec} is over the limit for this expression in ball arithmetic; "
                             "lower the orders")
        what = f"order {group.order}" + (f" with {digits} digits" if digits else "")
        raise InputError(f"{what} exceeds the limit for this expression in ball arithmetic; lower the order"
                         + (" or --digits" if digits else ""))


def _plan(group: Group, digits: int | None) -> tuple[bool, int]:
    """Whether the group's entry is exactly 0 (:func:`_vanishes`), and its first precision; otherwise
    :func:`check_work` passed. Facts of (graph, counts, digits) alone: worked out once per graph."""
    cache = ball.facts(group.graph)
    key = ("plan", tuple(group.counts.items()), group.taylor, digits)
    found = cache.get(key)
    if found is None:
        vanishes = group.taylor is None and _vanishes(group)
        if not vanishes:
            check_work(group, digits)  # raises each time: a refusal is not cached
        found = cache[key] = (vanishes, _start_bits(group.order, digits))
    return found


def _start_bits(order: int, digits: int | None) -> int:
    bits = 64 + (3 * order) // 4
    if digits:
        bits += math.ceil(digits * 3.33) + 16
    return bits


def certify(group: Group, point: dict[str, Any], candidates: Sequence[Any] | None, *, tol: float,
            digits: int | None = None) -> list[Outcome]:
    """Certify one group of entries at one point.

    Args:
        group: what to compute.
        point: variable values, exact where the user typed exact constants (sympy numbers, ints) or
            float64 numbers (exact binary fractions).
        candidates: float64's values (None: no float64 value, e.g. with ``digits``).
        tol: the relative tolerance (float64 mode).
        digits: print this many correct significant digits instead.

    Returns:
        One :class:`Outcome` per entry.
    """
    vanishes, bits = _plan(group, digits)
    if vanishes:
        # f is a polynomial of lower degree in a variable (or does not contain it): exactly 0, at any
        # order and without work, where f itself is defined
        with ball.precision(64):
            enc = ball.univariate(group.graph, None, 0, {k: ball.constant(v) for k, v in point.items()})
        if enc.culprit is not None:
            return [Outcome(math.nan, Certificate(False, bits=64, reason="no finite enclosure"),
                            error="undefined", culprit=enc.culprit)]
        zero = mpmath.mpf(0) if digits else 0.0
        return [Outcome(zero, Certificate(True, bits=64, radius=0.0, mid=0.0))]
    n = group.size
    terms = group.order + 1
    cands = list(candidates) if candidates is not None else [None] * n
    done: list[Outcome | None] = [None] * n
    nonfinite = 0
    prev: list[list[float]] | None = None  # with a kink: the needed coefficients' radii one precision lower
    last: list[arb] = []
    culprit: int | None = None
    kink: int | None = None
    for _ in range(MAX_DOUBLINGS + 1 + NONFINITE_DOUBLINGS):
        with ball.precision(bits, terms):
            pt = {k: ball.constant(v) for k, v in point.items()}
            balls, culprit, kink, needed = group.balls(pt)
        last = balls
        if culprit is not None or not all(b.is_finite() for b in balls):
            nonfinite += 1
            if nonfinite > NONFINITE_DOUBLINGS:
                break
            bits *= 2
            continue
        if kink is not None:
            # A derivative exists at a kink only if both one-sided expansions agree up to its order: the
            # enclosure of both then narrows with the precision; a kink keeps it wide. Decide from two
            # precisions whether every coefficient the entry needs narrows.
            radii = [[float(c.rad()) for c in cs] for cs in needed]
            if prev is None:
                prev = radii
                bits *= 2
                continue
            for i in range(n):
                narrows = all(r == 0 or r <= p * 2.0 ** (-bits / 8) for r, p in zip(radii[i], prev[i]))
                if done[i] is None and not narrows:
                    done[i] = _kink(balls[i], bits, kink)
            prev = radii
        for i, b in enumerate(balls):
            if done[i] is None:
                done[i] = _verdict(b, cands[i], tol, digits, bits)
        if all(d is not None for d in done):
            return [d for d in done if d is not None]
        if _work(group, 2 * bits) > RAISED_WORK:
            break
        bits *= 2
    out = []
    for i in range(n):
        if done[i] is not None:
            out.append(done[i])
            continue
        b = last[i] if i < len(last) else arb.nan()
        if culprit is not None or not b.is_finite():
            out.append(Outcome(math.nan, Certificate(False, bits=bits, reason="no finite enclosure"),
                               error="undefined", culprit=culprit))
        elif kink is not None:
            out.append(_kink(b, bits, kink))
        else:
            c = cands[i]
            out.append(Outcome(c if c is not None else _mid(b, digits),
                               Certificate(False, bits=bits, radius=_rad(b), mid=_mid(b, digits),
                                           reason=f"the enclosure {b.str(12, radius=True)} at {bits} bits does "
                                                  "not prove the value within the tolerance")))
    return out


def _kink(b: arb, bits: int, culprit: int | None) -> Outcome:
    return Outcome(math.nan, Certificate(False, bits=bits, radius=_rad(b), reason="not differentiable (a kink)"),
                   error="kink", culprit=culprit)


def _rad(b: arb) -> float:
    return float(b.rad())


def _mid(b: arb, digits: int | None) -> Any:
    if digits:
        with mpmath.workdps(digits + 10):
            man, exp = b.mid().man_exp()
            return mpmath.ldexp(mpmath.mpf(int(man)), int(exp))
    return float(b.mid())


def _verdict(b: arb, candidate: Any, tol: float, digits: int | None, bits: int) -> Outcome | None:
    """The outcome this ball proves, or None when it is too wide."""
    if digits:
        text = decimal(b, digits)
        if text is None:
            return None
        with mpmath.workdps(digits + 10):
            value = _mpf(text)
        return Outcome(value, Certificate(True, bits=bits, radius=_rad(b), mid=_mid(b, digits)))
    m = float(b.mid())
    if b.abs_lower() > _FLOAT_MAX:
        return Outcome(math.inf, Certificate(True, bits=bits, radius=_rad(b), mid=m), error="range")
    scale = max(float(b.abs_lower()), SMALL)

    def within(v: float) -> bool:
        return float((b - arb(v)).abs_upper()) <= tol * scale

    cert = Certificate(True, bits=bits, radius=_rad(b), mid=m)
    if candidate is None or math.isnan(candidate):  # no float64 value to confirm: the ball's own
        candidate, missing = None, True
    else:
        missing = False
    ok = missing or math.isfinite(candidate) and within(float(candidate))
    nearest = _nearest_double(b, m)
    if nearest is not None and (ok or within(nearest)):
        # the ball pins the true value's nearest double: print it (exp's 10th derivative at 0 is 1.0,
        # not float64's 0.9999999999999997); "replaced" only when float64 missed the tolerance
        return Outcome(nearest, cert if ok else Certificate(True, bits=bits, radius=cert.radius, mid=cert.mid,
                                                            replaced=True))
    if ok and not missing:
        return Outcome(float(candidate), cert)
    replaced = cert if missing else Certificate(True, bits=bits, radius=cert.radius, mid=cert.mid, replaced=True)
    if b.contains(0) and within(0.0):
        return Outcome(0.0, replaced)
    if math.isfinite(m) and within(m):
        return Outcome(m, replaced)
    return None


def _fraction(x: arb) -> Fraction:
    """An exact ball (a midpoint or a radius) as a fraction."""
    man, exp = (int(v) for v in x.man_exp())
    return Fraction(man << exp) if exp >= 0 else Fraction(man, 1 << -exp)


def _ends(b: arb) -> tuple[Fraction, Fraction]:
    """The ball's ends exactly (arb's lower() and upper() round outward at the working precision)."""
    m, r = _fraction(b.mid()), _fraction(b.rad())
    return m - r, m + r


def _nearest_double(b: arb, m: float) -> float | None:
    """The double nearest the true value, when the whole ball rounds to it (else None): every point of
    the ball lies within half a spacing of the candidate ``m``, the double nearest its midpoint, on
    either side (the spacing below a power of two is half the one above), strictly, so no tie can
    round away."""
    if not math.isfinite(m):
        return None
    below = abs(m - math.nextafter(m, -math.inf))
    above = abs(math.nextafter(m, math.inf) - m)
    half = arb(min(below, above)) / 2  # exact: a power of two
    return m if (b - arb(m)).abs_upper() < half else None


def decimal(b: arb, n: int) -> str | None:
    """The ball's value to ``n`` significant digits, correctly rounded, or None when its ends round
    differently (more precision needed). A ball within 10^-(n+12) of zero gives "0"."""
    if b.is_zero():
        return "0"
    if b.contains(0):
        return "0" if b.rad() < arb(10) ** (-(n + 12)) else None
    lo, hi = (_round(x, n) for x in _ends(b))
    return lo if lo == hi else None


def _round(f: Fraction, n: int) -> str:
    sign = "-" if f < 0 else ""
    f = abs(f)
    e10 = int((f.numerator.bit_length() - f.denominator.bit_length()) * 0.30102999566398120)
    while f >= Fraction(10) ** (e10 + 1):
        e10 += 1
    while f < Fraction(10) ** e10:
        e10 -= 1
    r = round(f * Fraction(10) ** (n - 1 - e10))
    if r >= 10**n:
        r //= 10
        e10 += 1
    s = _digits(r)
    return f"{sign}{s[0]}.{s[1:]}e{e10}" if n > 1 else f"{sign}{s}e{e10}"


def _mpf(text: str) -> Any:
    """A decimal from :func:`decimal` as an mpf at the working precision, without str -> int (Python
    refuses decimal strings beyond 4300 digits)."""
    if text == "0":
        return mpmath.mpf(0)
    mant, exp = text.split("e")
    sign = -1 if mant.startswith("-") else 1
    digits = mant.lstrip("-").replace(".", "")
    r = 0
    for i in range(0, len(digits), 1000):
        part = digits[i : i + 1000]
        r = r * 10 ** len(part) + int(part)
    return sign * mpmath.mpf(r) * mpmath.mpf(10) ** (int(exp) - len(digits) + 1)


def _digits(r: int) -> str:
    """str(r) for any size (Python refuses int-to-decimal conversions beyond 4300 digits)."""
    if r < 10**4000:
        return str(r)
    hi, lo = divmod(r, 10**4000)
    return _digits(hi) + _digits(lo).rjust(4000, "0")


def estimate_flags(values: Any, perturbed: Any, tol: float) -> Any:
    """Rows whose float64 values may be off: a run at the point moved by a few ulps changes them by more
    than a small fraction of ``tol`` (rounding errors amplified by cancellation change with the
    rounding, which the move reshuffles), or either run is not finite."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64).reshape(values.shape[0], -1)
    p = np.asarray(perturbed, dtype=np.float64).reshape(values.shape[0], -1)
    with np.errstate(all="ignore"):
        scale = np.maximum(np.abs(v), SMALL)
        off = ~(np.abs(p - v) <= (tol / 64) * scale)
    from .graph import rows_any

    return rows_any(off)


def beyond_bound(bounds: Sequence[Any], tol: float) -> Any:
    """Rows whose rounding-error bound (relative, in units of 2^-53, one array per engine run; see
    :func:`gradcli.batch._rho`) exceeds ``tol / 8``; an undefined (nan) bound is beyond it.
    A bound, unlike :func:`estimate_flags`' estimate, needs no wide margin: on H = x exp(-(x^2+y^2))
    sin(3y) at 10^6 points the true errors (60-digit mpmath) of rows with the largest bounds were at most
    0.09 of their bounds (tests/test_bound.py checks this on generated expressions)."""
    import numpy as np

    limit = (tol / 8) * 2.0**53
    out = np.less_equal(bounds[0], limit)
    for b in bounds[1:]:
        out &= np.less_equal(b, limit)
    return np.logical_not(out, out=out)


def perturb(values: dict[str, Any]) -> dict[str, Any]:
    """The point moved by about four ulps in every coordinate (0 stays 0)."""
    import numpy as np

    return {k: np.asarray(v, dtype=np.float64) * (1 + 2.0**-50) for k, v in values.items()}


Point = Callable[[int], dict[str, Any]]
