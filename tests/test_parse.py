"""gradcli.parse: EXPR, --wrt and --at text to values, never executed, always bounded.

Every expected value is an independent sympy object built here; every refusal is an InputError whose
one-line message names the culprit, raised in well under a second.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcli.errors import GradcliError, InputError, NotFinite
from gradcli.parse import MAX_DEPTH, MAX_ORDER, parse_at, parse_constant, parse_expr, parse_wrt, symbol
from gradcli.syntax import FUNCTIONS

x, y, z, e = (symbol(n) for n in "xyze")


def refused(call, *args, **kwargs) -> InputError:
    """Run a call that must raise InputError within a second of CPU time; return the error."""
    start = time.process_time()
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    assert time.process_time() - start < 1.0
    assert "\n" not in info.value.message
    return info.value


# ---- symbol ---------------------------------------------------------------------------------------
def test_symbol_makes_a_real_symbol() -> None:
    assert symbol("x") == sympy.Symbol("x", real=True)


def test_symbol_differs_from_a_plain_sympy_symbol() -> None:
    assert symbol("x") != sympy.Symbol("x")


# ---- valid EXPR -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2*x^3", 2 * x**3),
        ("2*x**3+5*y**2", 2 * x**3 + 5 * y**2),
        ("x^2^3", x**8),
        ("2^3^2", sympy.Integer(512)),
        ("-x**2", -(x**2)),
        ("--x", x),
        ("+x", x),
        ("x - y - z", x - y - z),
        ("x / y / z", x / (y * z)),
        ("1/3", sympy.Rational(1, 3)),
        ("2.5", sympy.Rational(5, 2)),
        ("1e-3*x", x / 1000),
        ("log(x)", sympy.log(x)),
        ("log(x, 2)", sympy.log(x) / sympy.log(2)),
        ("pi/4", sympy.pi / 4),
        ("E^x", sympy.exp(x)),
        ("e*x", e * x),
        ("atan2(y, x)", sympy.atan2(y, x)),
        ("min(x, y, 3)", sympy.Min(x, y, 3)),
        ("abs(x) + sign(x)", sympy.Abs(x) + sympy.sign(x)),
        ("sqrt(x)", sympy.sqrt(x)),
        ("x**(1/2)", sympy.sqrt(x)),
        ("x^-1", 1 / x),
        ("(x +\n 1)", x + 1),
        ("  x + 1", x + 1),
        ("x_1 + y2", symbol("x_1") + symbol("y2")),
        ("9" * 100, sympy.Integer(10**100 - 1)),
        ("2**1000", sympy.Integer(2) ** 1000),
        ("x**(10**6)", x**1000000),
        ("sin(x)^2 + cos(x)^2", sympy.sin(x) ** 2 + sympy.cos(x) ** 2),
    ],
)
def test_valid_expression_builds_the_sympy_expression(text: str, expected: sympy.Expr) -> None:
    assert parse_expr(text) == expected


@pytest.mark.parametrize("name", ["I", "N", "S", "Q", "O", "beta", "zeta", "lambda_", "alpha", "e", "x"])
def test_single_letters_and_lowercase_names_are_ordinary_variables(name: str) -> None:
    assert parse_expr(name) == symbol(name)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_registry_function_parses_to_its_build(name: str) -> None:
    fn = FUNCTIONS[name]
    args = [x, y][: fn.min_args] if fn.min_args <= 2 else [x, y, z][: fn.min_args]
    text = f"{name}({', '.join(str(a) for a in args)})"
    assert parse_expr(text) == fn.build(*args)


def test_e_is_a_variable_and_E_is_eulers_number() -> None:
    assert parse_expr("e + E") == e + sympy.E


def test_caret_and_double_star_are_the_same_power() -> None:
    assert parse_expr("x^3") == parse_expr("x**3")


def test_leading_minus_parses() -> None:
    assert parse_expr("-x") == -x


def test_long_flat_sum_is_not_too_deep() -> None:
    assert parse_expr("+".join(["x"] * 1000)) == 1000 * x


def test_nesting_just_below_the_limit_parses() -> None:
    expected = x
    for _ in range(MAX_DEPTH - 1):
        expected = sympy.sin(expected)
    assert parse_expr("sin(" * (MAX_DEPTH - 1) + "x" + ")" * (MAX_DEPTH - 1)) == expected


# ---- refusals of EXPR, with the column ---------------------------------------------------------------
def test_unknown_function_names_it_its_column_and_the_known_ones() -> None:
    message = refused(parse_expr, "x + foo(x)").message
    assert message.startswith("unknown function 'foo' at column 5 (known: abs, acos, ")


def test_syntax_error_names_the_column_and_the_unexpected_token() -> None:
    assert refused(parse_expr, "(x +)").message == "syntax error at column 5: unexpected ')'"


def test_unexpected_end_is_reported_after_the_last_column() -> None:
    assert refused(parse_expr, "x +").message == "syntax error at column 4: unexpected end of expression"


def test_columns_count_caret_as_one_character() -> None:
    assert refused(parse_expr, "x^2 + y.real").message == "attribute access '.real' at column 8 is not allowed"


def test_operator_column_points_at_the_operator() -> None:
    assert refused(parse_expr, "(x) // y").message.startswith("operator '//' at column 5")


def test_function_name_without_call_says_it_is_a_function() -> None:
    assert refused(parse_expr, "sin + 1").message == "'sin' at column 1 is a function: call it as sin(...)"


def test_sympy_class_name_is_refused_as_a_variable() -> None:
    assert refused(parse_expr, "2*Symbol").message == "'Symbol' at column 3 is a sympy name, not allowed as a variable"


@pytest.mark.parametrize("name", ["Integer", "Matrix", "Function", "Lambda"])
def test_other_sympy_class_names_are_refused(name: str) -> None:
    assert "sympy name" in refused(parse_expr, name).message


@pytest.mark.parametrize("name", ["_x", "__import__", "__builtins__"])
def test_underscore_names_are_refused(name: str) -> None:
    assert f"'{name}' at column 1" in refused(parse_expr, name).message


def test_wrong_argument_count_names_the_function_and_counts() -> None:
    assert refused(parse_expr, "sin(x, y)").message == "sin() at column 1 takes 1 argument(s), got 2"


def test_keyword_argument_is_refused_by_name() -> None:
    assert refused(parse_expr, "log(x, base=2)").message.startswith("keyword argument 'base=' in log()")


def test_empty_expression_is_refused() -> None:
    assert refused(parse_expr, "").message == "empty expression"


def test_whitespace_only_expression_is_refused() -> None:
    assert refused(parse_expr, " \t ").message == "empty expression"


def test_too_long_expression_says_its_length() -> None:
    assert "100000 characters" in refused(parse_expr, "x" * 100_000).message


def test_too_many_nodes_is_refused() -> None:
    inner = "max(" + ",".join(["-" * 30 + "x"] * 64) + ")"
    assert "more than 5000 syntax nodes" in refused(parse_expr, f"max({inner},{inner},{inner})").message


def test_nesting_just_above_the_limit_is_refused() -> None:
    assert "too deeply nested" in refused(parse_expr, "sin(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH).message


def test_non_ascii_character_is_named_with_its_code_point() -> None:
    assert refused(parse_expr, "x − y").message == "unsupported character '−' (U+2212) at column 3"


def test_huge_literal_is_refused_by_digit_count() -> None:
    assert "more than 100 digits" in refused(parse_expr, "1" * 101).message


@pytest.mark.parametrize("text", ["1e999", "1e-999"])
def test_float_literal_out_of_range_is_refused(text: str) -> None:
    assert refused(parse_expr, text).message == f"number '{text}' at column 1 is out of range"


def test_huge_power_of_numbers_is_refused() -> None:
    assert "too large" in refused(parse_expr, "9**9**9**9").message


def test_huge_exponent_of_a_variable_is_refused() -> None:
    assert refused(parse_expr, "x**(10**6 + 1)").message.startswith("exponent at column 2 too large")


def test_factorial_sized_gamma_is_refused() -> None:
    assert "gamma() at column 1" in refused(parse_expr, "gamma(10**6)").message


def test_root_of_a_huge_integer_is_refused() -> None:
    assert "roots" in refused(parse_expr, "sqrt(10**300 + 1)").message


def test_constant_that_is_not_real_is_not_finite() -> None:
    with pytest.raises(NotFinite):
        parse_expr("x + sqrt(-1)")


# ---- hostile input: never executed, refused quickly -----------------------------------------------------
INJECTIONS = [
    "__import__('os').system('touch {p}')",
    "__import__('os')",
    "open('{p}', 'w')",
    "exec(\"open('{p}', 'w')\")",
    "eval(\"open('{p}', 'w')\")",
    "(lambda: open('{p}', 'w'))()",
    "[open('{p}', 'w') for _ in [1]]",
    "().__class__.__bases__[0].__subclasses__()",
    "x.__class__",
    "Symbol('x')",
    "sympify(\"open('{p}', 'w')\")",
    "getattr(x, 'real')",
    'f\'{{open("{p}", "w")}}\'',
    "x if open('{p}', 'w') else y",
    "(x := open('{p}', 'w'))",
]

HOSTILE = [
    "().__class__",
    "x.real",
    "x[0]",
    "'a'",
    "lambda: 1",
    "[x for x in y]",
    "exec('1')",
    "9**9**9**9",
    "10**10**10",
    "x**(10**10)",
    "2**2**2**2**2**2",
    "exp(exp(exp(100)))",
    "exp(1e300)",
    "loggamma(10**5)",
    "(2*x)**(10**6)",
    "(1/3)**100000",
    "(" * 5000 + "x" + ")" * 5000,
    "(" * 4000 + "x" + ")" * 4000,
    "-" * 9999 + "x",
    "x" + "**x" * 3000,
    "x" * 100_000,
    "+".join(["x"] * 10_000),
    "+".join(["x"] * 4000),
    "1e999",
    "",
    "   ",
    "x +",
    ")(",
    "x = 1",
    "x; y",
    "x if y else z",
    "x < y",
    "not x",
    "x and y",
    "x @ y",
    "x // y",
    "x % y",
    "~x",
    "x | y",
    "x << 1",
    "1j",
    "True",
    "None",
    "...",
    "f'{x}'",
    "b'x'",
    "sin(x, y)",
    "sin()",
    "sin(x=1)",
    "min(x)",
    "*x",
    "sin(*x)",
    "max(**x)",
    "{x}",
    "{x: 1}",
    "(x, y)",
    "x[1:2]",
    "await x",
    "x # comment",
    "x\r",
    "x\x00",
    "0x" + "f" * 200,
    "sin(x)(y)",
]


@pytest.mark.parametrize("template", INJECTIONS)
def test_code_injection_is_refused_and_never_runs(template: str, tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    refused(parse_expr, template.format(p=sentinel))
    assert not sentinel.exists()


@pytest.mark.parametrize("template", INJECTIONS)
def test_code_injection_in_at_is_refused_and_never_runs(template: str, tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    refused(parse_at, "x=" + template.format(p=sentinel))
    assert not sentinel.exists()


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: repr(t[:30]))
def test_hostile_input_is_refused_quickly(text: str) -> None:
    error = refused(parse_expr, text)
    assert error.exit_code == 2 and error.message  # the contract's exit code for bad input, with a reason


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="xy19.e()+-*/^,_ sinlogpqrt=[]'", max_size=30))
def test_any_text_parses_or_raises_a_user_error(text: str) -> None:
    try:
        result = parse_expr(text)
    except GradcliError:
        return
    assert isinstance(result, sympy.Basic)


# ---- parse_constant ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2", sympy.Integer(2)),
        ("-1.5", sympy.Rational(-3, 2)),
        ("1e-3", sympy.Rational(1, 1000)),
        ("pi/4", sympy.pi / 4),
        ("sqrt(2)", sympy.sqrt(2)),
        ("1/3", sympy.Rational(1, 3)),
        ("E", sympy.E),
        ("log(8, 2)", sympy.Integer(3)),
    ],
)
def test_constant_value_is_exact(text: str, expected: sympy.Expr) -> None:
    assert parse_constant(text, what="--at x") == expected


def test_constant_with_a_variable_names_it() -> None:
    message = refused(parse_constant, "y + 1", what="--at x").message
    assert message == "--at x: value must be a constant, got variable 'y'"


def test_constant_e_hints_at_E() -> None:
    assert "E" in refused(parse_constant, "e", what="--at x").message.split("'e'")[1]


@pytest.mark.parametrize("text", ["1/0", "log(-1)", "sqrt(-1)", "acos(2)", "log(0)", "gamma(0)"])
def test_constant_that_is_not_a_finite_real_is_refused(text: str) -> None:
    message = refused(parse_constant, text, what="--at x").message
    assert message.startswith("--at x: ") and "not a finite real number" in message


def test_constant_syntax_error_is_prefixed_with_what() -> None:
    message = refused(parse_constant, "1 +", what="--at x").message
    assert message == "--at x: syntax error at column 4: unexpected end of expression"


def test_constant_huge_power_is_refused_with_what() -> None:
    assert refused(parse_constant, "9**9**9", what="--expect").message.startswith("--expect: ")


# ---- parse_wrt ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("x", ["x"]),
        ("x,y", ["x", "y"]),
        ("x:2,y", ["x", "x", "y"]),
        ("x:3", ["x", "x", "x"]),
        (" x : 2 , y ", ["x", "x", "y"]),
        ("y,x", ["y", "x"]),
        ("x:03", ["x", "x", "x"]),
        ("e", ["e"]),
    ],
)
def test_wrt_expands_in_order(spec: str, expected: list[str]) -> None:
    assert list(parse_wrt(spec)) == expected


def test_wrt_accepts_the_maximum_order() -> None:
    assert len(parse_wrt(f"x:{MAX_ORDER}")) == MAX_ORDER


def test_max_order_is_one_hundred_thousand() -> None:
    assert MAX_ORDER == 100_000


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("x:0", "'x:0'"),
        ("x:-1", "'x:-1'"),
        ("x:1.5", "'x:1.5'"),
        ("x:", "'x:'"),
        ("x:abc", "'x:abc'"),
        ("x:²", "'x:²'"),
        ("x,,y", "empty item"),
        ("x,", "empty item"),
        ("", "no variable"),
        ("   ", "no variable"),
        (":2", "missing variable name"),
        ("pi", "'pi' is a constant"),
        ("E", "'E' is a constant"),
        ("sin", "'sin' is a function"),
        ("_x", "'_x'"),
        ("lambda", "'lambda' is not a valid variable name"),
        ("x y", "'x y' is not a valid variable name"),
        ("Symbol", "'Symbol' is a sympy name"),
        (f"x:{MAX_ORDER + 1}", f"total order {MAX_ORDER + 1}"),
        (f"x:{MAX_ORDER},y", f"total order {MAX_ORDER + 1}"),
    ],
)
def test_wrt_refusal_names_the_item(spec: str, fragment: str) -> None:
    message = refused(parse_wrt, spec).message
    assert message.startswith("--wrt: ") and fragment in message


@pytest.mark.parametrize("order", ["1000000000", "9" * 5000])
def test_wrt_huge_order_is_refused_before_expanding(order: str) -> None:
    assert "too large" in refused(parse_wrt, f"x:{order}").message


def test_wrt_message_shortens_a_huge_item() -> None:
    assert len(refused(parse_wrt, "x:" + "9" * 5000).message) < 120


# ---- parse_at ----------------------------------------------------------------------------------------
def test_at_parses_names_and_exact_values() -> None:
    assert parse_at("x=1,y=pi/4") == {"x": sympy.Integer(1), "y": sympy.pi / 4}


def test_at_splits_only_on_top_level_commas() -> None:
    assert parse_at("y=atan2(1,2),z=log(8,2)") == {"y": sympy.atan2(1, 2), "z": sympy.Integer(3)}


def test_at_allows_whitespace_and_negative_values() -> None:
    assert parse_at(" x = -1.5 , y = 2 ") == {"x": sympy.Rational(-3, 2), "y": sympy.Integer(2)}


def test_at_keeps_the_given_order() -> None:
    assert list(parse_at("y=1,x=2")) == ["y", "x"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("x=1,x=2", "--at: 'x' given twice"),
        ("", "--at: no NAME=VALUE given"),
        ("x", "--at: expected NAME=VALUE, got 'x'"),
        ("x==1", "--at: expected NAME=VALUE, got 'x==1'"),
        ("x=1,,y=2", "--at: empty item in 'x=1,,y=2'"),
        ("x=1,", "--at: empty item in 'x=1,'"),
        ("=1", "--at: missing variable name"),
        ("sin=1", "--at: 'sin' is a function: call it as sin(...)"),
        ("pi=1", "--at: 'pi' is a constant, not a variable"),
        ("x=y", "--at x: value must be a constant, got variable 'y'"),
        ("x=", "--at x: empty expression"),
    ],
)
def test_at_refusal_names_the_culprit(spec: str, message: str) -> None:
    assert refused(parse_at, spec).message == message


def test_at_non_finite_value_names_the_variable() -> None:
    message = refused(parse_at, "x=1,y=1/0").message
    assert message.startswith("--at y: ") and "not a finite real number" in message
