"""Parquet --points and --output on one machine (issue 13): files, directories and globs read by batches,
rows named by file and row, the result table, and the atomic write."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from conftest import run  # noqa: E402

from gradcli import derivative  # noqa: E402

EXPR = "x*exp(-y)*sin(x*y)"


def _write(path: str, x: list[float], y: list[float], **extra: list) -> None:
    pq.write_table(pa.table({"x": x, "y": y, **extra}), path, row_group_size=3)


@pytest.fixture()
def data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    _write(str(d / "part-0.parquet"), [0.5, 1.0, 1.5, 2.0], [0.1, 0.2, 0.3, 0.4], id=["a", "b", "c", "d"])
    _write(str(d / "part-1.parquet"), [0.25, 0.75], [-0.5, 0.5], id=["e", "f"])
    return d


def _oracle(x: list[float], y: list[float]) -> list[float]:
    return derivative(EXPR, wrt="x,y", at={"x": np.array(x), "y": np.array(y)}).tolist()


def test_a_directory_is_read_in_file_order_one_value_per_row(capsys, data) -> None:
    code, out, err = run(capsys, "d", EXPR, "--wrt", "x,y", "--points", str(data), "--format", "plain")
    assert (code, err) == (0, "")
    expected = _oracle([0.5, 1.0, 1.5, 2.0, 0.25, 0.75], [0.1, 0.2, 0.3, 0.4, -0.5, 0.5])
    assert [float(v) for v in out.split()] == expected


def test_a_glob_and_a_single_file_work_and_rows_are_numbered_across_files(capsys, data) -> None:
    code, out, _ = run(capsys, "d", EXPR, "--wrt", "x,y", "--points", str(data / "part-*.parquet"), "--json")
    assert code == 0
    assert [json.loads(line)["line"] for line in out.splitlines()] == [1, 2, 3, 4, 5, 6]
    code, out, _ = run(capsys, "d", EXPR, "--wrt", "x,y", "--points", str(data / "part-1.parquet"), "--format",
                       "plain")
    assert code == 0 and [float(v) for v in out.split()] == _oracle([0.25, 0.75], [-0.5, 0.5])


def test_a_null_is_named_by_file_and_row_after_earlier_rows_are_written(capsys, tmp_path) -> None:
    _write(str(tmp_path / "a.parquet"), [1.0, 2.0], [0.0, 0.0])
    _write(str(tmp_path / "b.parquet"), [1.0, None, 3.0], [0.0, 0.0, 0.0])
    code, out, err = run(capsys, "d", "x*y", "--wrt", "x", "--points", str(tmp_path), "--format", "plain")
    assert code == 2
    assert len(out.split()) == 2
    assert err.strip().splitlines() == [f"gradcli: error: --points {tmp_path / 'b.parquet'}, row 2: the value of "
                                        "'x' is missing (null or NaN)"]


def test_a_domain_failure_is_named_by_file_and_row_exit_3(capsys, tmp_path) -> None:
    pq.write_table(pa.table({"x": [1.0, 2.0]}), str(tmp_path / "a.parquet"))
    pq.write_table(pa.table({"x": [3.0, -1.0]}), str(tmp_path / "b.parquet"))
    code, _, err = run(capsys, "d", "log(x)", "--points", str(tmp_path), "--format", "plain")
    assert code == 3
    assert f"{tmp_path / 'b.parquet'}, row 2: the result is not finite" in err


def test_output_parquet_has_the_input_columns_then_values_and_check_columns(capsys, data, tmp_path) -> None:
    out_path = tmp_path / "out.parquet"
    code, out, err = run(capsys, "d", EXPR, "--wrt", "x,y", "--points", str(data), "--output", str(out_path))
    assert (code, out, err) == (0, "", "")
    table = pq.read_table(str(out_path))
    assert table.column_names == ["x", "y", "id", "value", "check_ok", "check_rel_err", "certified", "error"]
    assert table.column("id").to_pylist() == list("abcdef")
    assert table.column("value").to_pylist() == _oracle([0.5, 1.0, 1.5, 2.0, 0.25, 0.75],
                                                        [0.1, 0.2, 0.3, 0.4, -0.5, 0.5])
    assert table.column("check_ok").to_pylist() == [True] * 6
    assert table.column("error").to_pylist() == [None] * 6


@pytest.mark.parametrize("ext", ["csv", "jsonl"])
def test_output_csv_and_jsonl_follow_the_extension(capsys, data, tmp_path, ext: str) -> None:
    out_path = tmp_path / f"out.{ext}"
    code, _, _ = run(capsys, "grad", "x*y", "--points", str(data), "--output", str(out_path))
    assert code == 0
    text = out_path.read_text()
    if ext == "csv":
        lines = text.splitlines()
        assert lines[0] == "x,y,id,d_x,d_y,check_ok,check_rel_err,certified,error"
        assert lines[1].startswith("0.5,0.1,a,0.1,0.5,True,")
    else:
        first = json.loads(text.splitlines()[0])
        assert first["id"] == "a" and first["d_x"] == 0.1 and first["d_y"] == 0.5 and first["error"] is None


def test_a_failed_run_leaves_no_output_file(capsys, tmp_path) -> None:
    _write(str(tmp_path / "a.parquet"), [1.0, float("nan")], [0.0, 0.0])
    out_path = tmp_path / "out" / "r.parquet"
    out_path.parent.mkdir()
    code, _, err = run(capsys, "d", "x*y", "--wrt", "x", "--points", str(tmp_path / "a.parquet"),
                       "--output", str(out_path))
    assert code == 2 and "row 2" in err
    assert os.listdir(out_path.parent) == []


def test_output_needs_points_and_a_known_extension(capsys, tmp_path) -> None:
    code, _, err = run(capsys, "d", "x**2", "--at", "x=1", "--output", str(tmp_path / "o.parquet"))
    assert code == 2 and "--points" in err
    code, _, err = run(capsys, "d", "x**2", "--points", str(tmp_path / "none.parquet"), "--output",
                       str(tmp_path / "o.txt"))
    assert code == 2 and ".parquet, .csv or .jsonl" in err


def test_without_the_extra_one_line_says_what_to_install(capsys, data, tmp_path, monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.setitem(sys.modules, name, None)
    code, out, err = run(capsys, "d", "x*y", "--wrt", "x", "--points", str(data))
    assert (code, out) == (2, "")
    assert err == "gradcli: error: pyarrow is not installed; Parquet, --output and --dask need it: " \
                  "pip install 'gradcli[dask]'\n"


@pytest.mark.parametrize(("column", "message"), [
    (pa.array([1.0, float("nan"), 2.0]), "row 2: the value of 'x' is missing (null or NaN)"),
    (pa.array([1.0, None, 2.0], type=pa.float64()), "row 2: the value of 'x' is missing (null or NaN)"),
    (pa.array([1.0, 2.0, float("inf")]), "row 3: the value of 'x' is not finite (inf)"),
    (pa.array(["1", "2", "3"]), "the column 'x' holds"),
])
def test_the_arrow_path_reads_and_rejects_as_the_pandas_path(column, message) -> None:
    from gradcli.errors import InputError
    from gradcli.parquet import arrow_chunk, validated_chunk

    table = pa.table({"x": column})

    def where(i: int) -> str:
        return f"f.parquet, row {i + 1}"

    for read in (lambda: arrow_chunk(table, ["x", "y"], {"y": 0.5}, where, range(1, 4)),
                 lambda: validated_chunk(table.to_pandas(), ["x", "y"], {"y": 0.5}, where, range(1, 4))):
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read()


def test_the_arrow_path_gives_the_pandas_paths_float64_values() -> None:
    from gradcli.parquet import arrow_chunk, validated_chunk

    table = pa.table({"x": pa.array([1, 2, 3], type=pa.int32()), "z": pa.array([0.5, 1.5, 2.5], type=pa.float32())})
    a = arrow_chunk(table, ["x", "y", "z"], {"y": 0.25}, str, range(1, 4))
    b = validated_chunk(table.to_pandas(), ["x", "y", "z"], {"y": 0.25}, str, range(1, 4))
    assert a.size == b.size == 3 and a.lines == b.lines
    for k in ("x", "y", "z"):
        assert a.values[k].dtype == np.float64 and np.array_equal(a.values[k], b.values[k])
