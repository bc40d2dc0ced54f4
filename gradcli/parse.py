"""Text to values, safely: EXPR and ``--at`` values to sympy, ``--wrt`` to a list of names.

Nothing here is ever executed as code. EXPR goes through ``ast.parse(mode="eval")`` (with ``^`` read as
``**``), the tree is checked against an explicit whitelist (numbers, names, ``+ - * / **``, unary
minus, calls of :data:`gradcli.syntax.FUNCTIONS` with positional arguments), and the sympy expression is
built from the checked nodes. Work is bounded before sympy sees it: text length, parenthesis and tree
depth, node count, literal size, and, for every constant subexpression, the size of its value
(estimated with a 64-bit mpmath approximation) and of the exact numbers sympy would compute.
Every refusal is an :class:`~gradcli.errors.InputError` with a one-line message naming the token and,
for EXPR, its 1-based column; a constant part that is not a finite real number (``1/0``, ``sqrt(-1)``)
is a :class:`~gradcli.errors.NotFinite` (exit 3), as it would be at evaluation.
"""

from __future__ import annotations

import ast
import difflib
import keyword
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

import mpmath
import sympy

from .errors import InputError, NotFinite
from .syntax import ALIASES, FUNCTIONS, Function

__all__ = ["MAX_ORDER", "Wrt", "symbol", "parse_expr", "parse_constant", "parse_wrt", "parse_at"]

MAX_LENGTH = 10_000  # characters of EXPR
MAX_DEPTH = 100  # nesting levels; sympy.diff itself hits the recursion limit near 150 nested calls
MAX_NODES = 5_000  # syntax-tree nodes
MAX_LITERAL_DIGITS = 100  # digits in one written number
MAX_MAGNITUDE = 10_000  # |log10| of any constant's value: beyond it, refused as out of range
MAX_DIGITS = 4_000  # digits of an exact rational sympy may build (CPython cannot print ints > 4300 digits)
MAX_ROOT_DIGITS = 100  # sympy factors a number to take its root: ~1 ms at 100 digits, minutes at 10^4
MAX_GAMMA_ARG = 1_000  # sympy evaluates gamma/loggamma of rationals exactly, through factorials
MAX_EXPONENT = 10**6  # |k| in base**k for a base with variables
MAX_ORDER = 100_000  # total differentiation order accepted by parse_wrt

_CONSTANTS = {"pi": (sympy.pi, mpmath.pi), "E": (sympy.E, mpmath.e)}
_SYMPY_NAMES = frozenset(name for name in dir(sympy) if len(name) > 1 and name[0].isupper())
_TAKES_ROOTS = frozenset({"sqrt", "exp"})  # exp(log(8)/3) is 2: sympy factors 8 to find that
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9_]*|\*\*|//|\S")
_ADDITIVE, _MULTIPLICATIVE = (ast.Add, ast.Sub), (ast.Mult, ast.Div)
#: other spellings of registry functions: name -> (the function, a constant last argument or None);
#: ``pow(a, b)`` is ``a**b`` (built as a power)
#: a number written against a name, ``2x`` or ``3.5y`` (not an exponent such as ``1e-3``)
_IMPLICIT = re.compile(r"(?<![A-Za-z0-9_.])([0-9]+(?:\.[0-9]*)?)(?![eE][+-]?[0-9])([A-Za-z_][A-Za-z0-9_]*)")
_REFUSED = {
    ast.Attribute: "attribute access", ast.Subscript: "subscript", ast.Starred: "'*' unpacking",
    ast.Lambda: "lambda", ast.IfExp: "conditional expression", ast.Compare: "comparison",
    ast.BoolOp: "boolean operator", ast.NamedExpr: "assignment ':='", ast.JoinedStr: "f-string",
    ast.Tuple: "tuple (commas only separate function arguments)", ast.List: "list", ast.Set: "set",
    ast.Dict: "dict", ast.ListComp: "comprehension", ast.SetComp: "comprehension",
    ast.DictComp: "comprehension", ast.GeneratorExp: "comprehension", ast.Await: "await",
    ast.Yield: "yield", ast.YieldFrom: "yield", ast.Slice: "slice",
}  # fmt: skip


def symbol(name: str) -> sympy.Symbol:
    """Return the sympy symbol for variable ``name``; every variable is real (``symbol("x")``)."""
    return sympy.Symbol(name, real=True)


def parse_expr(text: str) -> sympy.Expr:
    """Parse EXPR into a sympy expression, never executing it.

    Args:
        text: the expression, e.g. ``"2*x^3 + 5*y**2"``; ``^`` and ``**`` are both powers.
    Returns:
        The sympy expression (``2*x**3 + 5*y**2``, variables made by :func:`symbol`).
    Raises:
        InputError: empty, too long or too deep input, a syntax error, a refused construct, an
            unknown function, or a number too large; the message names the token and its column.
        NotFinite: a constant part is not a finite real number (``1/0``, ``log(-1)``).
    """
    with mpmath.workprec(64):
        return _Parser(text).parse().expr


def parse_expr_guarded(text: str) -> tuple[sympy.Expr, tuple[sympy.Expr, ...]]:
    """:func:`parse_expr`, plus the parts of EXPR that sympy simplified away but whose domain matters.

    sympy rewrites ``x/x`` to 1, ``log(x, x)`` to 1, ``sqrt(x)**2`` and ``exp(log(x))`` to x: true
    where the original is defined, but over the reals that is not everywhere (x = 0, x < 0). The
    engines evaluate these guards at every point, for their value only, so such a point still fails.

    >>> parse_expr_guarded("x/x + sqrt(y)**2")
    (y + 1, (1/x, sqrt(y)))

    The guards' variables stay variables of EXPR (x above needs a value).
    """
    with mpmath.workprec(64):
        parser = _Parser(text)
        expr = parser.parse().expr
    present = set(sympy.preorder_traversal(expr))
    return expr, tuple(g for g in dict.fromkeys(parser.guards) if g not in present)


def parse_constant(text: str, *, what: str) -> sympy.Expr:
    """Parse a constant expression (an ``--at`` value such as ``pi/4``), in EXPR's syntax.

    Args:
        text: the value, e.g. ``"sqrt(2)/2"``.
        what: what the value is, for messages, e.g. ``"--at x"``.
    Returns:
        The exact sympy constant (``sqrt(2)/2``), which is a finite real number.
    Raises:
        InputError: as :func:`parse_expr`, or the value has a variable or is not a finite real.
    """
    try:
        expr = parse_expr(text)
    except (InputError, NotFinite) as err:  # a value such as 1/0 is bad input for an option
        raise InputError(f"{what}: {err.message}") from None
    if expr.free_symbols:
        name = sorted(s.name for s in expr.free_symbols)[0]
        hint = " (Euler's number is E)" if name == "e" else ""
        raise InputError(f"{what}: value must be a constant, got variable '{name}'{hint}")
    try:  # every constant inside is bounded in size, so this is quick
        value = sympy.N(expr, 30)
        re_part, im_part = value.as_real_imag()
        ok = bool(re_part.is_Number and re_part.is_finite and im_part.is_zero)
    except (ArithmeticError, ValueError, TypeError):
        ok = False
    if not ok:
        raise InputError(f"{what}: value is not a finite real number")
    return expr


class Wrt(tuple):
    """A ``--wrt`` spec parsed once: the variables in differentiation order (it is that tuple), with
    its runs of repeated names, the count per name and its compact spelling, for every layer to read.

    >>> w = parse_wrt("x:2,y")
    >>> list(w), w.runs, w.counts, w.spec, w.order
    (['x', 'x', 'y'], (('x', 2), ('y', 1)), {'x': 2, 'y': 1}, 'x:2,y', 3)
    """

    __slots__ = ()

    @property
    def runs(self) -> tuple[tuple[str, int], ...]:
        """Consecutive repeats grouped: x,x,y gives (("x", 2), ("y", 1))."""
        out: list[list[Any]] = []
        for name in self:
            if out and out[-1][0] == name:
                out[-1][1] += 1
            else:
                out.append([name, 1])
        return tuple((n, k) for n, k in out)

    @property
    def counts(self) -> dict[str, int]:
        """How often each name occurs, in order of first appearance."""
        found: dict[str, int] = {}
        for name in self:
            found[name] = found.get(name, 0) + 1
        return found

    @property
    def spec(self) -> str:
        """The compact spelling: "x:300", "x:2,y", "x,y"."""
        return ",".join(name if k == 1 else f"{name}:{k}" for name, k in self.runs)

    @property
    def order(self) -> int:
        return len(self)


def parse_wrt(spec: str) -> Wrt:
    """Expand a ``--wrt`` spec into the variables to differentiate by, in order.

    ``NAME:K`` repeats NAME K times (K a positive integer): ``parse_wrt("x:2,y") == ("x", "x", "y")``, a :class:`Wrt`.

    Raises:
        InputError: an empty spec or item, a bad name, a bad order, or a total order > MAX_ORDER.
    """
    if not spec.strip():
        raise InputError("--wrt: no variable given")
    counts: list[tuple[str, int]] = []
    total = 0
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            raise InputError(f"--wrt: empty item in '{_show(spec)}'")
        name, colon, order = (s.strip() for s in item.partition(":"))
        _check_name(name, "--wrt")
        count = 1
        if colon:
            if not re.fullmatch("[0-9]+", order) or not order.strip("0"):
                raise InputError(f"--wrt: the order in '{_show(item)}' must be a positive whole number")
            if len(order.lstrip("0")) > len(str(MAX_ORDER)):  # refuse before int() of a huge string
                raise InputError(f"--wrt: the order in '{_show(item)}' is too large (at most {MAX_ORDER})")
            count = int(order)
        total += count
        if total > MAX_ORDER:
            raise InputError(f"--wrt: total order {total} is too large (at most {MAX_ORDER})")
        counts.append((name, count))
    return Wrt(name for name, count in counts for _ in range(count))


def parse_at(spec: str) -> dict[str, sympy.Expr]:
    """Parse ``--at``: ``"x=1,y=pi/4"`` gives ``{"x": 1, "y": pi/4}`` (exact sympy constants).

    Items are split on commas outside parentheses, so ``y=atan2(1,2)`` is one item.

    Raises:
        InputError: an empty spec or item, no single ``=``, a bad or repeated name, or a bad value.
    """
    if not spec.strip():
        raise InputError("--at: no NAME=VALUE given")
    point: dict[str, sympy.Expr] = {}
    for item in _split_top_level(spec, ","):
        parts = _split_top_level(item, "=")
        if not item.strip():
            raise InputError(f"--at: empty item in '{_show(spec)}'")
        if len(parts) != 2:
            raise InputError(f"--at: expected NAME=VALUE, got '{_show(item.strip())}'")
        name = parts[0].strip()
        _check_name(name, "--at")
        if name in point:
            raise InputError(f"--at: '{name}' given twice")
        point[name] = parse_constant(parts[1], what=f"--at {name}")
    return point


def _show(text: str, limit: int = 40) -> str:
    """``text`` shortened for an error message, so that a message stays one short line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` where it is outside every pair of brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "([{") - (ch in ")]}")
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def _name_problem(name: str) -> str | None:
    """Say why ``name`` cannot be a variable, or return None if it can."""
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        return "is not a valid variable name"
    if name.startswith("_"):
        return "is not allowed: names starting with '_' are reserved"
    if name in _CONSTANTS:
        return "is a constant, not a variable"
    if name in FUNCTIONS:
        return f"is a function: call it as {name}(...)"
    if name in _SYMPY_NAMES:
        return "is a sympy name, not allowed as a variable"
    return None


def _check_name(name: str, option: str) -> None:
    """Raise InputError naming ``option`` unless ``name`` is a valid variable name."""
    if not name:
        raise InputError(f"{option}: missing variable name")
    problem = _name_problem(name)
    if problem:
        raise InputError(f"{option}: '{_show(name)}' {problem}")


@dataclass(frozen=True, slots=True)
class _Value:
    """A built subexpression with what bounds the work on it."""

    expr: sympy.Expr
    approx: mpmath.mpf | mpmath.mpc | None = None  # value of a finite constant, else None
    digits: float = 0.0  # bound on the decimal digits of exact rationals inside
    roots: float = 0.0  # digits of the numbers sympy may take roots of when multiplying


def _log_size(number: sympy.Rational) -> float:
    """Decimal digits of the larger of a rational's numerator and denominator, roughly."""
    return max(abs(number.p), number.q).bit_length() * math.log10(2)


def _exact_digits(expr: sympy.Expr) -> float:
    """Digits bound of the exact rationals in a (small) sympy expression."""
    return sum(_log_size(r) for r in expr.atoms(sympy.Rational))


def _finite(value: mpmath.mpf | mpmath.mpc) -> mpmath.mpf | mpmath.mpc | None:
    """``value`` if it is finite, else None."""
    return value if mpmath.isfinite(value) else None


def _to_sympy(value: mpmath.mpf | mpmath.mpc) -> sympy.Expr:
    """A sympy Float (or complex Float) equal to an mpmath approximation."""
    if isinstance(value, mpmath.mpc) and value.imag:
        return sympy.Float(value.real) + sympy.I * sympy.Float(value.imag)
    return sympy.Float(mpmath.re(value))


def _to_mpmath(expr: sympy.Expr) -> mpmath.mpc | None:
    """The numeric value of a sympy number (as computed on Float arguments), or None if not finite."""
    re_part, im_part = expr.evalf(20).as_real_imag()
    if not (re_part.is_Number and im_part.is_Number and re_part.is_finite and im_part.is_finite):
        return None
    return mpmath.mpc(mpmath.mpf(sympy.Float(re_part)), mpmath.mpf(sympy.Float(im_part)))


def _log10_abs(value: mpmath.mpf | mpmath.mpc) -> float:
    """log10 |value|, and 0 for 0 (a zero has no size to bound)."""
    return float(mpmath.log10(abs(value))) if value else 0.0


class _Parser:
    """One EXPR: its text, the ``^`` -> ``**`` rewrite, the whitelist check and the build."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.src = text.replace("^", "**")
        self.lead = len(self.src) - len(self.src.lstrip())  # ast refuses leading indentation
        self.line_starts = [0] + [i + 1 for i, ch in enumerate(self.src[self.lead :]) if ch == "\n"]
        # src index -> text index: each "^" became two characters
        self.to_text = [i for i, ch in enumerate(text) for _ in range(2 if ch == "^" else 1)] + [len(text)]
        self.guards: list[sympy.Expr] = []  # parts with a restricted domain (see parse_expr_guarded)

    # ---- positions ----------------------------------------------------------------------------------
    def index(self, lineno: int, col_offset: int) -> int:
        """The index in ``src`` of an ast position (ASCII only, so byte and character offsets agree)."""
        return min(self.lead + self.line_starts[lineno - 1] + col_offset, len(self.src))

    def column(self, node: ast.AST) -> int:
        """The 1-based column of ``node`` in the user's text."""
        return self.to_text[self.index(node.lineno, node.col_offset)] + 1

    def between(self, left: ast.AST, right: ast.AST) -> tuple[str, int]:
        """The operator text between two nodes, outside their parentheses, and its column."""
        start = self.index(left.end_lineno, left.end_col_offset)
        segment = self.src[start : self.index(right.lineno, right.col_offset)]
        skip = len(segment) - len(segment.lstrip(" \t\n()\\"))
        return segment.strip(" \t\n()\\"), self.to_text[start + skip] + 1

    def refuse(self, node: ast.AST, what: str) -> InputError:
        """An InputError saying ``what`` at ``node`` is not allowed."""
        return InputError(f"{what} at column {self.column(node)} is not allowed")

    # ---- text and syntax ----------------------------------------------------------------------------
    def parse(self) -> _Value:
        """Check the text, parse it, check the tree, then build it."""
        self.check_text()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a SyntaxWarning would reach stderr
                tree = ast.parse(self.src[self.lead :], mode="eval")
        except SyntaxError as err:
            raise self.syntax_error(err) from None
        except (RecursionError, MemoryError):
            raise InputError("expression is too deeply nested or too long to parse") from None
        self.check_tree(tree.body)
        return self.build(tree.body)

    def check_text(self) -> None:
        """Refuse long, empty, non-ASCII or deeply parenthesized text, comments and long numbers."""
        text = self.text
        if len(text) > MAX_LENGTH:
            raise InputError(f"expression too long: {len(text)} characters (at most {MAX_LENGTH})")
        if not text.strip():
            raise InputError("empty expression")
        depth = 0
        for i, ch in enumerate(text):
            if not (" " <= ch <= "~" or ch in "\t\n") or ch == "#":
                raise InputError(f"unsupported character {ch!r} (U+{ord(ch):04X}) at column {i + 1}")
            depth += (ch in "([{") - (ch in ")]}")
            if depth > MAX_DEPTH:
                raise InputError(f"too deeply nested: more than {MAX_DEPTH} levels of parentheses")
        for match in _TOKEN.finditer(text):  # before ast, which would convert a huge literal
            if match[0][0].isdigit() and len(match[0].replace("_", "")) > MAX_LITERAL_DIGITS:
                raise InputError(f"number at column {match.start() + 1} has more than {MAX_LITERAL_DIGITS} digits")

    def syntax_error(self, err: SyntaxError) -> InputError:
        """ast's SyntaxError as one line naming the column and the unexpected token."""
        message = (err.msg or "invalid syntax").splitlines()[0]
        column = len(self.text) + 1  # ast reports offset 0 for an unexpected end
        if err.lineno and err.offset and 0 < err.lineno <= len(self.line_starts):
            column = self.to_text[self.index(err.lineno, err.offset - 1)] + 1
        token = _TOKEN.match(self.text, column - 1)
        implicit = _IMPLICIT.search(self.text)
        if implicit:  # 2x: Python says "invalid decimal literal"
            number, name = implicit.groups()
            return InputError(f"syntax error at column {implicit.start() + 1}: write {number}*{name} "
                              f"for {number} times {name} (there is no implicit multiplication)")
        if message.startswith("invalid syntax"):
            message = f"unexpected '{token[0]}'" if token else "unexpected end of expression"
        return InputError(f"syntax error at column {column}: {message}")

    # ---- the whitelist ------------------------------------------------------------------------------
    def check_tree(self, root: ast.expr) -> None:
        """Walk the tree iteratively, refusing anything off the whitelist, too many nodes or levels.

        A run such as ``a + b - c`` counts as one level (it is built at once), so long sums are fine.
        """
        stack: list[tuple[ast.expr, int]] = [(root, 1)]
        nodes = 0
        while stack:
            node, depth = stack.pop()
            nodes += 1
            if nodes > MAX_NODES:
                raise InputError(f"expression too large: more than {MAX_NODES} syntax nodes")
            if depth > MAX_DEPTH:
                raise InputError(f"too deeply nested: more than {MAX_DEPTH} levels at column {self.column(node)}")
            for child in self.check_node(node):
                stack.append((child, depth if _continues_run(node, child) else depth + 1))

    def check_node(self, node: ast.expr) -> list[ast.expr]:
        """Refuse ``node`` unless it is whitelisted; return its children."""
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, (*_ADDITIVE, *_MULTIPLICATIVE, ast.Pow)):
                token, column = self.between(node.left, node.right)
                raise InputError(f"operator '{token}' at column {column} is not allowed (use + - * / ^ **)")
            return [node.left, node.right]
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise self.refuse(node, f"operator '{'not' if isinstance(node.op, ast.Not) else '~'}'")
            return [node.operand]
        if isinstance(node, ast.Constant):
            self.check_number(node)
            return []
        if isinstance(node, ast.Name):
            problem = None if node.id in _CONSTANTS else _name_problem(node.id)
            if problem:
                raise InputError(f"'{_show(node.id)}' at column {self.column(node)} {problem}")
            return []
        if isinstance(node, ast.Call):
            return self.check_call(node)
        if isinstance(node, ast.Attribute):
            dot = self.src.find(".", self.index(node.value.end_lineno, node.value.end_col_offset))
            raise InputError(f"attribute access '.{_show(node.attr)}' at column {self.to_text[dot] + 1} is not allowed")
        raise self.refuse(node, _REFUSED.get(type(node), type(node).__name__))

    def check_number(self, node: ast.Constant) -> None:
        """Allow int and float literals of reasonable size, nothing else."""
        value = node.value
        if isinstance(value, bool) or value is None or value is Ellipsis:
            raise InputError(f"'{self.segment(node)}' at column {self.column(node)} is not a number")
        if isinstance(value, (str, bytes)):
            raise self.refuse(node, "string" if isinstance(value, str) else "bytes literal")
        if isinstance(value, complex):
            raise self.refuse(node, f"complex number '{self.segment(node)}' (values are real)")
        if isinstance(value, int) and abs(value) >= 10**MAX_LITERAL_DIGITS:  # e.g. a long hex literal
            raise InputError(f"number at column {self.column(node)} has more than {MAX_LITERAL_DIGITS} digits")
        mantissa = re.split("[eE]", self.segment(node))[0]
        if isinstance(value, float) and (math.isinf(value) or (value == 0 and re.search("[1-9]", mantissa))):
            raise InputError(f"number '{_show(self.segment(node))}' at column {self.column(node)} is out of range")

    def check_call(self, node: ast.Call) -> list[ast.expr]:
        """Allow ``f(a, ...)`` for a known f with positional arguments only, in f's arity."""
        known = ", ".join(sorted(FUNCTIONS))
        if not isinstance(node.func, ast.Name):
            if not isinstance(node.func, (ast.Attribute, ast.Lambda)) and node.args and not node.keywords:
                start = self.to_text[self.index(node.lineno, node.col_offset)]
                args_at = self.to_text[self.index(node.args[0].lineno, node.args[0].col_offset)]
                left = _show(self.text[start:args_at].rstrip("( \t\n"), 20)  # 2(x+1), (x+1)(x-1)
                raise InputError(f"'{left}(' at column {self.column(node)} is not a call: write {left}*(...) "
                                 "to multiply (there is no implicit multiplication)")
            self.check_node(node.func)  # an attribute or a lambda says so; anything else:
            raise InputError(f"call of a non-function at column {self.column(node)} (known functions: {known})")
        name, column = node.func.id, self.column(node)
        if name in ALIASES and name not in FUNCTIONS:
            self.alias(node, name, column)
            name = node.func.id
            if name == "pow":
                return list(node.args)
        if name not in FUNCTIONS:
            close = difflib.get_close_matches(name, [*FUNCTIONS, *ALIASES], n=3, cutoff=0.6)
            if close:
                names = " or ".join(f"{c}()" for c in close)
                raise InputError(f"unknown function '{_show(name)}' at column {column}: did you mean {names}?")
            raise InputError(f"unknown function '{_show(name)}' at column {column} (known: {known})")
        for kw in node.keywords:
            what = f"keyword argument '{kw.arg}='" if kw.arg else "'**' unpacking"
            raise InputError(f"{what} in {name}() at column {self.column(kw)} is not allowed")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.refuse(arg, f"'*' unpacking in {name}()")
        fn, count = FUNCTIONS[name], len(node.args)
        if not fn.min_args <= count <= fn.max_args:
            span = str(fn.min_args) if fn.min_args == fn.max_args else f"{fn.min_args} to {fn.max_args}"
            raise InputError(f"{name}() at column {column} takes {span} argument(s), got {count}")
        return list(node.args)

    def alias(self, node: ast.Call, name: str, column: int) -> None:
        """Rewrite a call of an alias (``ln``, ``log10``, ``arcsin``, ``pow``...) into the registry's
        function, in place: ``log10(x)`` becomes ``log(x, 10)``."""
        target, base = ALIASES[name]
        want = 2 if name in ("pow", "arctan2") else 1
        if len(node.args) != want or node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise InputError(f"{name}() at column {column} takes {want} argument(s) (it is {target}"
                             f"{', base ' + str(base) if base else ''}), got {len(node.args)}")
        node.func.id = target
        if base is not None:
            node.args.append(ast.copy_location(ast.Constant(value=base), node))

    def segment(self, node: ast.AST) -> str:
        """The user's text of ``node``."""
        start = self.to_text[self.index(node.lineno, node.col_offset)]
        return self.text[start : self.to_text[self.index(node.end_lineno, node.end_col_offset)]]

    # ---- the build ----------------------------------------------------------------------------------
    def build(self, node: ast.expr) -> _Value:
        """Build a checked node into sympy, bounding every number before sympy computes it."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, int):
                number = sympy.Integer(node.value)
                return _Value(number, mpmath.mpf(node.value), _log_size(number))
            # the literal's exact decimal value (0.7 is 7/10), so that --digits sees the number typed
            text = self.segment(node).replace("_", "")
            return _Value(sympy.Rational(text), mpmath.mpf(node.value))
        if isinstance(node, ast.Name):
            if node.id in _CONSTANTS:
                expr, approx = _CONSTANTS[node.id]
                return _Value(expr, +approx)  # unary plus evaluates mpmath's lazy constant
            return _Value(symbol(node.id))
        if isinstance(node, ast.UnaryOp):
            value = self.build(node.operand)
            return value if isinstance(node.op, ast.UAdd) else _negate(value)
        if isinstance(node, ast.Call):
            return self.build_call(node)
        if isinstance(node.op, ast.Pow):
            return self.build_power(node)
        return self.build_run(node)

    def build_run(self, node: ast.BinOp) -> _Value:
        """Build ``a + b - c`` or ``a * b / c`` in one sympy call (sympy flattens them anyway)."""
        group = _ADDITIVE if isinstance(node.op, _ADDITIVE) else _MULTIPLICATIVE
        operands: list[tuple[ast.operator | None, ast.expr]] = []
        current: ast.expr = node
        while isinstance(current, ast.BinOp) and isinstance(current.op, group):
            operands.append((current.op, current.right))
            current = current.left
        operands.append((None, current))
        values = []
        for op, operand in reversed(operands):
            value = self.build(operand)
            if isinstance(op, (ast.Sub, ast.Div)):
                value = _negate(value) if isinstance(op, ast.Sub) else _reciprocal(value)
                if isinstance(op, ast.Div) and value.expr.free_symbols:
                    self.guards.append(value.expr)
            values.append(value)
        approxes = [v.approx for v in values]
        approx = None
        if all(a is not None for a in approxes):
            approx = _finite(mpmath.fsum(approxes) if group is _ADDITIVE else mpmath.fprod(approxes))
        roots = (max if group is _ADDITIVE else sum)(v.roots for v in values)  # products merge roots
        digits = sum(v.digits for v in values)
        self.check_size(node, approx, digits, roots)
        exprs = [v.expr for v in values]
        expr = sympy.Add(*exprs) if group is _ADDITIVE else sympy.Mul(*exprs)
        return self.real(node, _Value(expr, approx, digits, roots))

    def build_power(self, node: ast.BinOp) -> _Value:
        """Build ``a ** b``, refusing results too large to compute (``9**9**9``, ``x**(10**10)``)."""
        base, exp = self.build(node.left), self.build(node.right)
        _, column = self.between(node.left, node.right)
        digits, roots = base.digits + exp.digits, max(base.roots, exp.roots)
        if not exp.expr.is_Integer:  # sympy may take roots of the numbers inside: E**(log(8)/3) is 2
            roots += base.digits + exp.digits
        approx = None
        if exp.approx is not None:
            if base.approx is not None:  # both numbers: bound |log10 a**b| before anything computes it
                size = abs(exp.approx) * abs(_log10_abs(base.approx))
                if size > MAX_MAGNITUDE:
                    raise InputError(f"power at column {column} too large: about {float(size):.3g} digits")
                approx = _finite(mpmath.power(base.approx, exp.approx)) if base.approx or exp.approx.real > 0 else None
            elif abs(exp.approx) > MAX_EXPONENT:
                raise InputError(f"exponent at column {column} too large (at most {MAX_EXPONENT} in size)")
            if exp.expr.is_Rational and (base.expr.is_Number or base.expr.is_Mul or base.expr.is_Pow):
                digits = float(abs(exp.expr)) * base.digits + exp.digits  # sympy distributes the power
        self.check_size(node, approx, digits, roots, column)
        power = sympy.Pow(base.expr, exp.expr)
        if base.expr.free_symbols and not (exp.expr.is_Integer and exp.expr >= 0) and power.free_symbols:
            self.guards.append(power)
        return self.real(node, _Value(power, approx, digits, roots))

    def build_call(self, node: ast.Call) -> _Value:
        """Build ``f(args)`` from the registry's ``build``."""
        name, column = node.func.id, self.column(node)
        if name == "pow":  # the alias pow(a, b): a**b
            power = ast.BinOp(left=node.args[0], op=ast.Pow(), right=node.args[1])
            return self.build_power(ast.copy_location(power, node))
        fn, args = FUNCTIONS[name], [self.build(arg) for arg in node.args]
        if fn.factorial_like and any(a.expr.is_Rational and abs(a.expr) > MAX_GAMMA_ARG for a in args):
            raise InputError(
                f"{name}() at column {column}: an exact argument beyond {MAX_GAMMA_ARG} is too large"
                f" (write a decimal, e.g. {name}({MAX_GAMMA_ARG}.5), for a numeric value)"
            )
        approx = None
        if all(a.approx is not None for a in args):
            try:
                approx = _to_mpmath(fn.build(*(_to_sympy(a.approx) for a in args)))
            except (ValueError, TypeError, ArithmeticError):  # mpmath at a pole: loggamma(-1.0)
                raise self.not_finite(node) from None
        digits, roots = sum(a.digits for a in args), max(a.roots for a in args)
        if name in _TAKES_ROOTS:
            roots += digits
        self.check_size(node, approx, digits, roots, column)
        expr = self.apply(fn, [a.expr for a in args], column)
        if fn.factorial_like:  # an exact factorial may have come out
            digits += _exact_digits(expr)
        if fn.guarded and expr.free_symbols:  # poles or a restricted domain: kept if sympy folds it away
            self.guards.append(expr)
        if name == "log":  # log(x, b) = log(x)/log(b), which sympy may fold (log(x, x) is 1)
            for a in args:  # log(1, -1) is 0/(i pi) = 0 for sympy; log(x, y - y) has base 0
                v = a.approx if a.approx is not None or a.expr.free_symbols else _to_mpmath(a.expr)
                if not a.expr.free_symbols and (v is None or mpmath.im(v) or mpmath.re(v) <= 0):
                    raise self.not_finite(node)
            self.guards += [sympy.log(a.expr) for a in args if a.expr.free_symbols]
            self.guards += [1 / sympy.log(a.expr) for a in args[1:] if a.expr.free_symbols]
        return self.real(node, _Value(expr, approx, digits, roots))

    def real(self, node: ast.AST, value: _Value) -> _Value:
        """``value``, unless it is a constant that is not a finite real number, or has a non-finite part.

        Checked at every node because sympy folds such parts away before any later stage could see
        them: ``abs(acos(2))`` is real, ``sqrt(-1)**2`` is -1, ``1/(1/0)`` is 0 and ``log(x, log(x, 1))``
        is 0, while over the reals each is undefined (exit 3, as for a constant ``1/0``).
        """
        expr = value.expr
        bad = expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo)
        if not bad and not expr.free_symbols:  # a constant, maybe only by cancellation (sqrt(x - x - 1))
            v = value.approx if value.approx is not None else _to_mpmath(expr)
            bad = v is None or bool(mpmath.im(v))
        if bad:
            raise self.not_finite(node)
        return value

    def not_finite(self, node: ast.AST) -> NotFinite:
        """A NotFinite naming ``node``'s text and column."""
        text = _show(self.segment(node).strip())
        return NotFinite(f"'{text}' at column {self.column(node)} is not a finite real number")

    @staticmethod
    def apply(fn: Function, args: list[sympy.Expr], column: int) -> sympy.Expr:
        """``fn.build(*args)``; sympy's refusals (``max`` of a complex number) become InputErrors."""
        try:
            return fn.build(*args)
        except (ValueError, TypeError) as err:
            raise InputError(f"cannot evaluate {fn.name}() at column {column}: {str(err).splitlines()[0]}") from None

    def check_size(
        self, node: ast.AST, approx: mpmath.mpf | mpmath.mpc | None, digits: float, roots: float, column: int = 0
    ) -> None:
        """Refuse a value beyond MAX_MAGNITUDE, exact numbers beyond MAX_DIGITS, roots beyond MAX_ROOT_DIGITS."""
        column = column or self.column(node)
        if approx is not None and abs(_log10_abs(approx)) > MAX_MAGNITUDE:
            raise InputError(f"number out of range at column {column}: beyond 10^±{MAX_MAGNITUDE}")
        if digits > MAX_DIGITS:
            raise InputError(f"number too large at column {column}: more than {MAX_DIGITS} digits")
        if roots > MAX_ROOT_DIGITS:
            raise InputError(f"number at column {column} too large for exact roots (over {MAX_ROOT_DIGITS} digits)")


def _continues_run(parent: ast.expr, child: ast.expr) -> bool:
    """Whether ``child`` is the left part of the same ``+ -`` or ``* /`` run as ``parent``."""
    if not (isinstance(parent, ast.BinOp) and isinstance(child, ast.BinOp) and child is parent.left):
        return False
    return any(isinstance(parent.op, g) and isinstance(child.op, g) for g in (_ADDITIVE, _MULTIPLICATIVE))


def _negate(value: _Value) -> _Value:
    """``-value``."""
    return _Value(-value.expr, None if value.approx is None else -value.approx, value.digits, value.roots)


def _reciprocal(value: _Value) -> _Value:
    """``1/value`` (sympy gives zoo for 1/0; the approximation is then unknown)."""
    approx = 1 / value.approx if value.approx else None
    return _Value(sympy.Pow(value.expr, -1), approx, value.digits, value.roots)
