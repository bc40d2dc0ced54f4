"""Text to values, safely: EXPR and ``--at`` through a whitelist over Python's syntax tree.

Nothing here evaluates user text: ``ast.parse`` only builds a tree, the walk below accepts numbers,
names, ``+ - * / **`` (``^`` is power), unary minus and calls of the registry's functions, and builds
the sympy objects itself. Sizes are bounded before sympy computes anything (length, depth, node count,
literal size, numeric powers), so hostile input is refused in milliseconds.
"""

from __future__ import annotations

import ast
import keyword
import math
from typing import Any

import sympy

from .errors import InputError
from .ops import FUNCTIONS

__all__ = ["symbol", "parse_expr", "parse_constant", "parse_wrt", "parse_at", "MAX_ORDER"]

MAX_LENGTH = 10_000
MAX_DEPTH = 200
MAX_NODES = 5_000
MAX_LITERAL_DIGITS = 100
MAX_RESULT_DIGITS = 10_000  # a numeric power may have at most this many digits
MAX_EXPONENT = 10**6  # |n| in x**n for a non-constant base
MAX_ORDER = 100_000

_CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi, "E": sympy.E}
_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_REFUSED = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Lambda: "lambdas",
    ast.Compare: "comparisons",
    ast.BoolOp: "boolean operators",
    ast.IfExp: "conditional expressions",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Set: "sets",
    ast.Dict: "dicts",
    ast.JoinedStr: "f-strings",
    ast.Starred: "starred arguments",
    ast.NamedExpr: "assignment expressions",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


def symbol(name: str) -> sympy.Symbol:
    """The variable ``name`` (every variable is real, so |x|' = sign(x) and log(exp(x)) = x)."""
    return sympy.Symbol(name, real=True)


def _col(node: ast.AST) -> int:
    return getattr(node, "col_offset", 0) + 1


def _sympy_names() -> frozenset[str]:
    return frozenset(n for n in dir(sympy) if len(n) > 1 and n[0].isupper())


_SYMPY_CLASSES = _sympy_names()


def check_name(name: str, *, where: str) -> str:
    """A valid variable name, or an InputError that says why not."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise InputError(f"{where}: {name!r} is not a valid variable name")
    if name.startswith("_"):
        raise InputError(f"{where}: names starting with '_' are not allowed ({name!r})")
    if name in _CONSTANTS:
        raise InputError(f"{where}: {name!r} is a constant, not a variable")
    if name in FUNCTIONS:
        raise InputError(f"{where}: {name!r} is a function, not a variable")
    if name in _SYMPY_CLASSES:
        raise InputError(f"{where}: {name!r} is a sympy name, not allowed as a variable")
    return name


def _tree(text: str, what: str) -> ast.Expression:
    if not isinstance(text, str):
        raise InputError(f"{what} must be text, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise InputError(f"{what} is {len(text)} characters long; the limit is {MAX_LENGTH}")
    if "\x00" in text:
        raise InputError(f"{what} contains a NUL character")
    if not text.strip():
        raise InputError(f"{what} is empty")
    # a cheap depth bound before ast.parse, whose recursion a 5000-deep nesting would exhaust
    depth = deepest = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise InputError(f"{what} is nested {deepest} parentheses deep; the limit is {MAX_DEPTH}")
    try:
        tree = ast.parse(text.strip().replace("^", "**").replace("\n", " "), mode="eval")
    except SyntaxError as exc:
        col = (exc.offset or 1) + (len(text) - len(text.lstrip()))
        raise InputError(f"syntax error in {what} at column {col}: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise InputError(f"{what} is too deeply nested to parse") from None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise InputError(f"{what} has {count} syntax nodes; the limit is {MAX_NODES}")
    return tree


def _digits(value: sympy.Expr) -> float:
    """log10 of a number's magnitude (0 for zero)."""
    v = abs(value)
    if v == 0:
        return 0.0
    if isinstance(v, sympy.Rational):
        return math.log10(int(v.p)) - math.log10(int(v.q)) if v.p < 10**300 and v.q < 10**300 else (
            len(str(v.p)) - len(str(v.q)))
    return float(sympy.log(sympy.N(v, 15), 10))


def _power(base: sympy.Expr, exp: sympy.Expr, node: ast.AST) -> sympy.Expr:
    if exp.is_number and (exp.is_Rational or exp.is_Float):
        if base.is_number and base.is_Rational and base != 0:
            size = abs(float(exp)) * abs(_digits(base)) if exp.is_Rational else 0.0
            if size > MAX_RESULT_DIGITS:
                raise InputError(f"power too large at column {_col(node)}: about 10^{size:.3g} digits")
        elif not base.is_number and abs(exp) > MAX_EXPONENT:
            raise InputError(f"exponent too large at column {_col(node)}: |{exp}| > {MAX_EXPONENT}")
    elif exp.is_number and base.is_number and base.is_Rational and abs(base) > 1:
        # a symbolic exponent such as pi**50 or 2**sqrt(1e6): bound its magnitude before evaluating
        est = abs(float(sympy.N(exp, 15))) * abs(_digits(base))
        if est > MAX_RESULT_DIGITS:
            raise InputError(f"power too large at column {_col(node)}")
    return sympy.Pow(base, exp)


def _build(node: ast.AST) -> sympy.Expr:
    """The sympy expression of a validated node (iterative: post-order with an explicit stack)."""
    stack: list[tuple[ast.AST, bool]] = [(node, False)]
    done: dict[int, sympy.Expr] = {}
    while stack:
        n, ready = stack.pop()
        if not ready:
            stack.append((n, True))
            stack.extend((c, False) for c in _children(n))
            continue
        done[id(n)] = _one(n, done)
    return done[id(node)]


def _children(n: ast.AST) -> list[ast.AST]:
    if isinstance(n, ast.Expression):
        return [n.body]
    if isinstance(n, ast.BinOp):
        return [n.left, n.right]
    if isinstance(n, ast.UnaryOp):
        return [n.operand]
    if isinstance(n, ast.Call):
        _check_call(n)
        return list(n.args)
    return []


def _check_call(n: ast.Call) -> None:
    if not isinstance(n.func, ast.Name):
        raise InputError(f"only plain function calls are allowed (column {_col(n)})")
    name = n.func.id
    fn = FUNCTIONS.get(name)
    if fn is None:
        raise InputError(f"unknown function '{name}' at column {_col(n)} (known: {', '.join(sorted(FUNCTIONS))})")
    if n.keywords:
        raise InputError(f"{name}() takes no keyword arguments (column {_col(n)})")
    if any(isinstance(a, ast.Starred) for a in n.args):
        raise InputError(f"starred arguments are not allowed (column {_col(n)})")
    if not fn.min_args <= len(n.args) <= fn.max_args:
        want = str(fn.min_args) if fn.min_args == fn.max_args else f"{fn.min_args} to {fn.max_args}"
        raise InputError(f"{name}() takes {want} argument(s), got {len(n.args)} (column {_col(n)})")


def _number(n: ast.Constant) -> sympy.Expr:
    v = n.value
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        kind = {str: "strings", bytes: "bytes", complex: "complex numbers"}.get(type(v), repr(v))
        raise InputError(f"{kind} not allowed in an expression (column {_col(n)})")
    if isinstance(v, int):
        if v >= 10**MAX_LITERAL_DIGITS:
            raise InputError(f"integer literal too long at column {_col(n)}")
        return sympy.Integer(v)
    if not math.isfinite(v):
        raise InputError(f"number out of range at column {_col(n)}")
    return sympy.Float(v)


def _one(n: ast.AST, done: dict[int, sympy.Expr]) -> sympy.Expr:
    if isinstance(n, ast.Expression):
        return done[id(n.body)]
    if isinstance(n, ast.Constant):
        return _number(n)
    if isinstance(n, ast.Name):
        if n.id in _CONSTANTS:
            return _CONSTANTS[n.id]
        if n.id in FUNCTIONS:
            raise InputError(f"'{n.id}' is a function: call it, as in {n.id}(x) (column {_col(n)})")
        return symbol(check_name(n.id, where=f"column {_col(n)}"))
    if isinstance(n, ast.UnaryOp):
        if isinstance(n.op, ast.USub):
            return -done[id(n.operand)]
        if isinstance(n.op, ast.UAdd):
            return done[id(n.operand)]
        raise InputError(f"operator {type(n.op).__name__} is not allowed (column {_col(n)})")
    if isinstance(n, ast.BinOp):
        op = _BINOPS.get(type(n.op))
        if op is None:
            sym = {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|",
                   ast.BitXor: "^^", ast.LShift: "<<", ast.RShift: ">>"}.get(type(n.op), type(n.op).__name__)
            raise InputError(f"operator '{sym}' is not allowed (column {_col(n)})")
        a, b = done[id(n.left)], done[id(n.right)]
        if op == "**":
            return _power(a, b, n)
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        return sympy.nan if a == 0 and b == 0 else a / b
    if isinstance(n, ast.Call):
        return FUNCTIONS[n.func.id].build(*(done[id(a)] for a in n.args))
    what = _REFUSED.get(type(n), type(n).__name__)
    raise InputError(f"{what} not allowed in an expression (column {_col(n)})")


def parse_expr(text: str) -> sympy.Expr:
    """EXPR to a sympy expression, refusing everything outside the contract's syntax.

    >>> parse_expr("2*x^3") == 2 * symbol("x") ** 3
    True
    """
    return _build(_tree(text, "EXPR"))


def parse_constant(text: str, *, what: str) -> sympy.Expr:
    """A constant expression (``--at`` values, ``--expect``): finite, real, no variables."""
    value = _build(_tree(text, what))
    free = sorted(str(s) for s in value.free_symbols)
    if free:
        raise InputError(f"{what}: value must be a constant, got variable '{free[0]}'")
    try:
        num = sympy.N(value, 30)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        raise InputError(f"{what}: value cannot be evaluated") from None
    if not (num.is_number and num.is_real and num.is_finite) or num.has(sympy.zoo, sympy.nan):
        raise InputError(f"{what}: value is not a finite real number")
    return value


def parse_wrt(spec: str) -> list[str]:
    """``"x:2,y"`` to ``["x", "x", "y"]``; each K in NAME:K a whole number >= 1.

    >>> parse_wrt("x:2,y")
    ['x', 'x', 'y']
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("--wrt is empty")
    items: list[tuple[str, int]] = []
    total = 0
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            raise InputError(f"--wrt {spec!r} has an empty item")
        name, colon, count = item.partition(":")
        name, count = name.strip(), count.strip()
        check_name(name, where="--wrt")
        k = 1
        if colon:
            if not count.isdigit() or len(count) > 7:
                raise InputError(f"--wrt {item!r}: the order after ':' must be a whole number >= 1")
            k = int(count)
            if k < 1:
                raise InputError(f"--wrt {item!r}: the order must be at least 1")
        total += k
        if total > MAX_ORDER:
            raise InputError(f"--wrt asks for order {total}; the limit is {MAX_ORDER}")
        items.append((name, k))
    return [name for name, k in items for _ in range(k)]


def _split_top(spec: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in spec:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_at(spec: str) -> dict[str, sympy.Expr]:
    """``"x=1,y=pi/4"`` to ``{"x": 1, "y": pi/4}`` (commas inside parentheses belong to the value)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("--at is empty")
    if len(spec) > MAX_LENGTH:
        raise InputError(f"--at is {len(spec)} characters long; the limit is {MAX_LENGTH}")
    out: dict[str, sympy.Expr] = {}
    for item in _split_top(spec):
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not value.strip():
            raise InputError(f"--at {item.strip()!r}: expected NAME=VALUE")
        check_name(name, where="--at")
        if name in out:
            raise InputError(f"--at: '{name}' given twice")
        out[name] = parse_constant(value, what=f"--at {name}")
    return out
