"""One JSON schema for every command (README "JSON schema"; gradcli.render.JSON_SCHEMA).

Every command, at one point and with --points, with and without --digits, --no-check and
--show-symbolic: each --json line is validated against the one schema by a small validator (the
subset of JSON Schema the schema uses), and the shapes the schema cannot express are checked here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run

from gradcli.render import JSON_SCHEMA

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Where ``value`` breaks ``schema``: type, enum, anyOf, properties, required,
    additionalProperties, items, minItems, minimum."""
    out: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return [f"{path}: {value!r} is not of type {types}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} not in {schema['enum']}")
    if "anyOf" in schema and all(errors(value, s, path) for s in schema["anyOf"]):
        out.append(f"{path}: {value!r} matches none of anyOf")
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        out.append(f"{path}: {value!r} < {schema['minimum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        out += [f"{path}: missing {k!r}" for k in schema.get("required", []) if k not in value]
        for k, v in value.items():
            if k in props:
                out += errors(v, props[k], f"{path}.{k}")
            elif schema.get("additionalProperties") is False:
                out.append(f"{path}: unexpected key {k!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                out += errors(v, schema["additionalProperties"], f"{path}.{k}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{path}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, v in enumerate(value):
                out += errors(v, schema["items"], f"{path}[{i}]")
    return out


def shape(v: Any) -> Any:
    return [shape(x) for x in v] if isinstance(v, list) else None


SHAPE_DEPTH = {"d": 0, "grad": 1, "taylor": 1, "hessian": 2, "jacobian": 2, "plot": 1}


def depth(v: Any) -> int:
    return 1 + depth(v[0]) if isinstance(v, list) and v else (1 if isinstance(v, list) else 0)


def validate(line: str) -> dict[str, Any]:
    obj = json.loads(line)
    problems = errors(obj, JSON_SCHEMA)
    assert not problems, problems
    assert depth(obj["value"]) == SHAPE_DEPTH[obj["command"]], obj["value"]
    check = obj["check"]
    for key in ("radius", "symbolic_value"):
        assert shape(check[key]) == shape(obj["value"]), (key, check[key], obj["value"])
    if check["symbolic"] is not None:
        assert shape(check["symbolic"]) == shape(obj["value"])
    if obj["command"] == "taylor":
        assert len(obj["coefficients"]) == len(obj["value"]) == obj["order"] + 1
    else:
        if obj["command"] == "plot":  # f and its derivatives up to the highest order drawn
            assert len(obj["value"]) == obj["order"] + 1
        assert obj["coefficients"] is None
    return obj


COMMANDS = [
    ["d", "2*x**3+5*y**2", "--wrt", "x,x"],
    ["d", "exp(x)*y", "--wrt", "x:30,y"],
    ["grad", "x*exp(y)"],
    ["hessian", "2*x**3+5*y**2+11*x*y+5"],
    ["jacobian", "x*y", "x+y", "sin(x)"],
    ["taylor", "exp(x)*y", "--wrt", "x", "--order", "4"],
]
EXTRAS = [[], ["--digits", "25"], ["--no-check"], ["--show-symbolic"]]


@pytest.mark.parametrize("extra", EXTRAS, ids=lambda e: " ".join(e) or "default")
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0] + " " + a[1])
def test_every_command_at_one_point_validates(capsys, argv: list[str], extra: list[str]) -> None:
    code, out, err = run(capsys, *argv, "--at", "x=0.5,y=2", "--json", *extra)
    assert code == 0, err
    (line,) = out.splitlines()
    obj = validate(line)
    assert obj["line"] is None and obj["error"] is None and obj["at"].keys() == {"x", "y"}
    assert obj["expr"] == [a for a in argv[1:] if not a.startswith("-") and a not in ("x", "x,x", "x:30,y", "4")]
    check = obj["check"]
    if "--no-check" in extra:
        assert check["skipped"] == "--no-check" and check["rel_err"] is None
        assert (check["symbolic"] is None) == ("--show-symbolic" not in extra)
    else:
        assert check["ok"] is True and check["symbolic"] is not None
    if "--digits" in extra:
        assert all(isinstance(v, str) for v in flat(obj["value"]))
        assert all(isinstance(v, str) for v in flat(check["symbolic_value"]) if v is not None)


def flat(v: Any) -> list[Any]:
    return [x for item in v for x in flat(item)] if isinstance(v, list) else [v]


@pytest.mark.parametrize("extra", [[], ["--digits", "20"], ["--no-check"]], ids=lambda e: " ".join(e) or "default")
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0] + " " + a[1])
def test_every_command_with_points_validates(tmp_path: Path, capsys, argv: list[str], extra: list[str]) -> None:
    path = tmp_path / "p.csv"
    path.write_text("x,y\n0.5,2\n0.25,-1\n1,3\n")
    code, out, err = run(capsys, *argv, "--points", str(path), "--json", *extra)
    assert code == 0, err
    objs = [validate(line) for line in out.splitlines()]
    assert [o["line"] for o in objs] == [2, 3, 4]
    # the symbolic derivative once, on the first row
    if "--no-check" not in extra:
        assert objs[0]["check"]["symbolic"] is not None
    assert all(o["check"]["symbolic"] is None for o in objs[1:])


def test_taylor_poly_adds_the_poly_key(capsys) -> None:
    code, out, err = run(capsys, "taylor", "exp(x)*y", "--wrt", "x", "--order", "2", "--at", "x=0,y=2", "--json",
                         "--poly")
    assert code == 0, err
    obj = validate(out)
    assert obj["poly"] == "2.0 + 2.0*x + 1.0*x**2"
    code, out, _ = run(capsys, "taylor", "exp(x)", "--wrt", "x", "--order", "2", "--at", "x=0", "--json")
    assert "poly" not in validate(out)  # the one optional key: only with --poly


def test_plot_json_validates_for_every_grid_point(capsys) -> None:
    code, out, err = run(capsys, "plot", "sqrt(x)", "--range", "-1:1", "--orders", "0,1,3", "--points", "5",
                         "--format", "json")
    assert code == 0, err
    objs = [validate(line) for line in out.splitlines()]
    assert [o["line"] for o in objs] == [1, 2, 3, 4, 5] and all(o["order"] == 3 for o in objs)
    assert objs[0]["error"] and objs[-1]["value"][0] == 1.0


def test_wrt_is_compact_at_high_order(capsys) -> None:
    code, out, err = run(capsys, "d", "exp(2*x)", "--wrt", "x:300", "--at", "x=1", "--digits", "30", "--json",
                         "--no-check")
    assert code == 0, err
    obj = validate(out)
    assert obj["wrt"] == "x:300" and obj["order"] == 300 and len(out) < 1000


def test_wrt_keeps_the_differentiation_order(capsys) -> None:
    code, out, err = run(capsys, "d", "x*y**2", "--wrt", "y,x,y", "--at", "x=1,y=2", "--json")
    assert code == 0, err
    obj = validate(out)
    assert (obj["wrt"], obj["order"]) == ("y,x,y", 3)


def test_a_row_outside_the_domain_validates_with_its_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "p.csv"
    path.write_text("x,y\n1,2\n-1,2\n")
    code, out, _ = run(capsys, "grad", "log(x)*y", "--points", str(path), "--json")
    assert code == 3
    good, bad = (validate(line) for line in out.splitlines())
    assert good["error"] is None and bad["error"] and bad["value"] == [None, None]
    assert bad["check"]["ok"] is None and bad["check"]["symbolic_value"] == [None, None]


def test_the_schema_rejects_what_it_should() -> None:
    # the validator is not vacuous
    good = {"command": "d", "expr": ["x"], "wrt": "x", "order": 1, "at": {"x": 1.0}, "value": 1.0,
            "coefficients": None, "line": None, "error": None,
            "check": {"method": "ball", "bits": 53, "radius": 0.0, "certified": True, "symbolic": "1",
                      "symbolic_value": 1.0, "rel_err": 0.0, "skipped": None, "ok": True}}
    assert errors(good, JSON_SCHEMA) == []
    assert errors({**good, "expr": "x"}, JSON_SCHEMA)
    assert errors({**good, "wrt": ["x"]}, JSON_SCHEMA)
    assert errors({**good, "extra": 1}, JSON_SCHEMA)
    assert errors({k: v for k, v in good.items() if k != "line"}, JSON_SCHEMA)
    assert errors({**good, "check": {**good["check"], "method": "sympy"}}, JSON_SCHEMA)
    assert errors({**good, "check": None}, JSON_SCHEMA)
