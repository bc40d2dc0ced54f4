"""--dask and gradcli.dask on a real distributed.LocalCluster (2 worker processes, no mock), issue 13:
the cluster's rows equal one process's, a killed worker does not lose the job, bad rows are named by file
and row, and what is sent to the workers is text and options."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pyarrow")
distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from conftest import run  # noqa: E402

import gradcli  # noqa: E402
import gradcli.dask as gdask  # noqa: E402

EXPR = "x*exp(-y)*sin(x*y)+log(1+x^2)"


@pytest.fixture(scope="module")
def client():
    # Dask's nanny writes MALLOC_TRIM_THRESHOLD_ and OMP_NUM_THREADS into this process's environment and
    # leaves them there; every later subprocess (the --points memory test's gradcli) would inherit them
    saved = dict(os.environ)
    try:
        with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
                                      silence_logs=50) as cluster, distributed.Client(cluster) as c:
            yield c
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Six files of 1,500 rows (row groups of 500): six partitions."""
    d = tmp_path_factory.mktemp("dask") / "data"
    d.mkdir()
    rng = np.random.default_rng(13)
    for k in range(6):
        n = 1500
        pq.write_table(pa.table({"id": np.arange(k * n, (k + 1) * n), "x": rng.uniform(0.1, 2.0, n),
                                 "y": rng.uniform(-1.0, 1.0, n)}), str(d / f"part-{k}.parquet"), row_group_size=500)
    return d


def _address(client) -> str:
    return client.scheduler.address


@pytest.mark.parametrize(("command", "wrt"), [("d", "x,y"), ("hessian", "x,y")])
def test_the_cluster_writes_the_same_table_as_one_process(capsys, client, data, tmp_path, command, wrt) -> None:
    one, many = tmp_path / "one.parquet", tmp_path / "many.parquet"
    code, _, err = run(capsys, command, EXPR, "--wrt", wrt, "--points", str(data), "--output", str(one))
    assert (code, err) == (0, "")
    code, _, err = run(capsys, command, EXPR, "--wrt", wrt, "--points", str(data), "--output", str(many),
                       "--dask", _address(client))
    assert (code, err) == (0, "")
    a, b = pq.read_table(str(one)), pq.read_table(str(many))
    assert a.num_rows == 9000 and a.equals(b)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Three files of 150 rows (row groups of 50): three pieces, rows numbered 1 to 450 across them."""
    d = tmp_path_factory.mktemp("small")
    for k in range(3):
        pq.write_table(pa.table({"x": np.linspace(0.1, 1.5, 150), "y": np.linspace(-1.0, 1.0, 150) + k}),
                       str(d / f"p{k}.parquet"), row_group_size=50)
    return d


@pytest.mark.parametrize("args", [
    ["d", EXPR, "--wrt", "x,y", "--format", "json"],
    ["hessian", EXPR, "--wrt", "x,y", "--format", "json"],
    ["grad", EXPR, "--format", "csv"],
    ["d", EXPR, "--wrt", "x:3", "--format", "plain", "--no-check"],
])
def test_stdout_and_stderr_are_one_processs_row_for_row(capsys, client, data, args) -> None:
    single = run(capsys, *args, "--points", str(data))
    cluster = run(capsys, *args, "--points", str(data), "--dask", _address(client))
    assert single[0] == 0 and len(single[1].splitlines()) >= 9000
    assert cluster == single


def test_json_lines_are_the_schemas_objects_numbered_across_files(capsys, client, small) -> None:
    from test_json_schema import errors

    from gradcli.render import JSON_SCHEMA

    code, out, _ = run(capsys, "d", "x*y", "--wrt", "x", "--points", str(small), "--json", "--dask", _address(client))
    objects = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [o["line"] for o in objects] == list(range(1, 451))
    assert [e for o in objects for e in errors(o, JSON_SCHEMA)] == []
    assert [o["check"]["symbolic"] for o in objects[:2]] == ["y", None]  # once, in the run's first object


@pytest.mark.parametrize("args", [
    ["d", "x*y", "--wrt", "x", "--expect", "0.5"],  # --expect fails on most rows: ten named, then a count
    ["d", "exp(x)*sin(x)", "--wrt", "x:100", "--no-check"],  # float64 lost digits: replaced by certified values
    ["d", "exp(sin(x))*log(1+x^2)", "--wrt", "x:12", "--check-timeout", "0.000001"],  # checks skipped
    ["d", "log(x-0.8)", "--wrt", "x"],  # rows outside the domain: named by file and row, exit 3
])
def test_warnings_on_stderr_are_one_processs(capsys, client, small, args) -> None:
    single = run(capsys, *args, "--points", str(small), "--format", "plain")
    cluster = run(capsys, *args, "--points", str(small), "--format", "plain", "--dask", _address(client))
    assert single[2] != ""
    assert cluster == single


def _dataset(path) -> pa.Table:
    return pa.concat_tables([pq.read_table(str(path / f)) for f in sorted(os.listdir(path))])


def test_output_to_a_directory_the_workers_write_the_files_the_same_rows(capsys, client, data, tmp_path) -> None:
    one, many, file = tmp_path / "one", tmp_path / "many", tmp_path / "one.parquet"
    args = ["hessian", EXPR, "--wrt", "x,y", "--points", str(data)]
    assert run(capsys, *args, "--output", str(file))[0] == 0
    assert run(capsys, *args, "--output", f"{one}/") == (0, "", "")
    assert run(capsys, *args, "--output", f"{many}/", "--dask", _address(client)) == (0, "", "")
    assert os.listdir(one) == ["part-00000.parquet"] and len(os.listdir(many)) == 6
    assert _dataset(one).equals(pq.read_table(str(file))) and _dataset(many).equals(pq.read_table(str(file)))
    assert sorted(os.listdir(tmp_path)) == ["many", "one", "one.parquet"]  # no temporary directory left


def test_output_to_an_existing_directory_exits_2_and_leaves_it_alone(capsys, client, data, tmp_path) -> None:
    (tmp_path / "out").mkdir()
    code, _, err = run(capsys, "d", "x*y", "--wrt", "x", "--points", str(data), "--output", f"{tmp_path / 'out'}/",
                       "--dask", _address(client))
    assert code == 2 and "out/" in err  # the CLI's own check (a directory) or the sink's (already exists)
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(tmp_path / "out") == []


def test_a_bad_row_in_one_partition_is_named_by_file_and_row_and_no_file_is_left(capsys, client, data,
                                                                                 tmp_path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in sorted(os.listdir(data)):
        table = pq.read_table(str(data / f))
        if f == "part-3.parquet":
            x = table.column("x").to_pylist()
            x[736] = None
            table = table.set_column(1, "x", pa.array(x, type=pa.float64()))
        pq.write_table(table, str(bad / f), row_group_size=500)
    out = tmp_path / "out" / "r.parquet"
    out.parent.mkdir()
    for target in (str(out), f"{out.parent / 'dataset'}/"):  # a file, and a directory the workers write
        code, _, err = run(capsys, "d", EXPR, "--wrt", "x", "--points", str(bad), "--output", target,
                           "--dask", _address(client))
        assert code == 2
        assert err == (f"gradcli: error: --points {bad / 'part-3.parquet'}, row 737: the value of 'x' is missing "
                       "(null or NaN)\n")
        assert os.listdir(out.parent) == []


def test_rows_outside_the_domain_exit_3_with_the_same_message_as_one_process(capsys, client, tmp_path) -> None:
    d = tmp_path / "dom"
    d.mkdir()
    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0]}), str(d / "a.parquet"))
    pq.write_table(pa.table({"x": [4.0, -1.0, -2.0]}), str(d / "b.parquet"))
    single = run(capsys, "d", "log(x)", "--points", str(d), "--format", "plain")
    cluster = run(capsys, "d", "log(x)", "--points", str(d), "--format", "plain", "--dask", _address(client))
    assert single[0] == cluster[0] == 3
    assert single[1] == cluster[1]  # nan for the rows outside the domain, as on one machine
    assert single[2] == cluster[2]
    assert f"{d / 'b.parquet'}, row 2: the result is not finite" in cluster[2]


def test_a_worker_killed_mid_run_the_job_completes_with_the_same_rows(client, data, tmp_path) -> None:
    from gradcli import ops
    from gradcli.commands import Job
    from gradcli.derive import prepare

    job = Job("hessian", (prepare(EXPR),), ("x", "y"), ops.F64)
    pids = client.run(os.getpid)
    killed: list[int] = []

    def progress(done: int, total: int) -> None:
        if not killed:  # after the first partition, while the others still run
            pid = next(iter(pids.values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    out = tmp_path / "k.parquet"
    code = gdask.run_cluster_job(job, str(data), {}, ["x", "y"], "unused", str(out), "plain", None,
                                 stdout=io.StringIO(), note=lambda m: None, progress=progress, client=client)
    assert code == 0 and killed
    one = tmp_path / "one.parquet"
    assert gradcli.cli.main(["hessian", EXPR, "--wrt", "x,y", "--points", str(data), "--output", str(one)]) == 0
    assert pq.read_table(str(out)).equals(pq.read_table(str(one)))
    client.wait_for_workers(2, timeout=60)


def test_the_api_returns_lazy_dask_objects_equal_to_the_plain_functions(client, data) -> None:
    ddf = dd.read_parquet(str(data))
    d = gdask.derivative(EXPR, ddf, wrt="x,y")
    g = gdask.gradient(EXPR, ddf)
    h = gdask.hessian(EXPR, ddf)
    assert isinstance(d, dd.Series) and isinstance(g, dd.DataFrame)
    frame = ddf.compute()
    at = {"x": frame["x"].to_numpy(), "y": frame["y"].to_numpy()}
    # certified values (within tol); a chunk's size may pick another engine, so not bit for bit here
    assert np.allclose(d.compute().to_numpy(), gradcli.derivative(EXPR, wrt="x,y", at=at), rtol=1e-12, atol=0)
    assert list(g.columns) == ["d_x", "d_y"]
    assert np.allclose(g.compute().to_numpy(), gradcli.gradient(EXPR, at=at), rtol=1e-12, atol=0)
    assert np.allclose(h.compute().to_numpy(), gradcli.hessian(EXPR, at=at).reshape(-1, 4), rtol=1e-12, atol=0)


def test_the_api_raises_the_first_rows_error_when_computed(client) -> None:
    ddf = dd.from_dict({"x": [1.0, 2.0, -1.0, 3.0]}, npartitions=2)
    lazy = gdask.derivative("log(x)", ddf)  # nothing is computed yet
    with pytest.raises(gradcli.NotFinite, match=r"partition 1, row 1: the result is not finite"):
        lazy.compute()


def test_what_is_sent_to_workers_is_the_expression_text_and_options(data) -> None:
    ddf = dd.read_parquet(str(data))
    spec = gdask._spec("d", EXPR, ddf, "x,y", {"y": "pi/4"}, False, 1e-8)
    assert spec.exprs == (EXPR,) and spec.defaults == (("y", 0.7853981633974483),)
    blob = pickle.dumps(spec)
    assert b"sympy" not in blob and b"Graph" not in blob and EXPR.encode() in blob


def test_dask_without_an_address_starts_a_local_cluster(tmp_path) -> None:
    pq.write_table(pa.table({"x": [0.5, 1.0, 2.0]}), str(tmp_path / "p.parquet"))
    argv = [sys.executable, "-m", "gradcli", "d", "sin(x)", "--points", str(tmp_path / "p.parquet")]
    single = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    cluster = subprocess.run([*argv, "--dask"], capture_output=True, text=True, timeout=120)
    assert (cluster.returncode, cluster.stderr) == (0, "")
    assert cluster.stdout == single.stdout == "0.8775825618903728\n0.5403023058681398\n-0.4161468365471424\n"


def test_with_output_dir_a_pieces_task_writes_its_file_and_sends_back_only_its_findings(data, tmp_path) -> None:
    from gradcli import ops
    from gradcli.commands import Job
    from gradcli.derive import prepare
    from gradcli.parquet import pieces

    spec = gdask.JobSpec.of(Job("d", (prepare(EXPR),), ("x",), ops.F64), ["x", "y"])
    parts = pieces(str(data), ["x", "y"], keep_columns=True)
    out = tmp_path / "part-00003.parquet"
    result = gdask.run_piece(parts[3], spec, "table", False, str(out))
    assert (result.rows, result.data, result.stop, result.findings) == (1500, None, None, gdask.Findings())
    assert len(pickle.dumps(result)) < 1000  # no row travels back
    table = pq.read_table(str(out))
    assert table.column_names == ["id", "x", "y", "value", "check_ok", "check_rel_err", "certified", "error"]
    assert table.column("id").to_pylist() == list(range(4500, 6000))
