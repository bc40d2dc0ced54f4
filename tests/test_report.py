"""What rows tell stderr (gradcli.report): one place for a single point, --points and a Dask cluster."""

from __future__ import annotations

import numpy as np
import pytest

from gradcli import ops
from gradcli.certify import Certificate
from gradcli.check import CheckResult
from gradcli.commands import Chunk, Job, Row, evaluate_block
from gradcli.derive import prepare
from gradcli.errors import NotFinite
from gradcli.report import MAX_NOTES, Findings, row_failed, row_notes


@pytest.mark.parametrize(("checks", "certs", "says", "failed"), [
    ([CheckResult(ok=False, value=1.5, rel_err=0.01)], [Certificate(ok=True)],
     "line 7: check failed: the engine's value disagrees with sympy (1.5), rel_err 0.01 > --tol 1e-08", True),
    (None, [Certificate(ok=False, reason="the ball at 512 bits is wider than --tol")],
     "line 7: error: the value could not be certified: the ball at 512 bits is wider than --tol", True),
    ([CheckResult(ok=True, value=2.0, rel_err=0.0)], [Certificate(ok=True, bits=128, replaced=True)],
     "line 7: note: float64 lost digits here; the printed value is the certified one (ball arithmetic at 128 bits)",
     False),
    ([CheckResult(ok=None, skipped="sympy did not finish within 1 s")], [Certificate(ok=True)],
     "line 7: note: symbolic check skipped (sympy did not finish within 1 s); the value stands on its "
     "ball-arithmetic certificate", False),
])
def test_what_a_row_says(checks, certs, says: str, failed: bool) -> None:
    row = Row(line=7, at={"x": 1.0}, value=2.0, checks=checks, certs=certs)
    assert row_notes(row, 1e-8) == (says,)
    assert row_failed(row) is failed


def _block(xs: list[float], lines: range) -> object:
    job = Job("d", (prepare("log(x)"),), ("x",), ops.F64, check=True)
    return job, evaluate_block(job, Chunk({"x": np.array(xs)}, len(xs), tuple(lines)))


def test_findings_name_the_first_rows_count_the_rest_and_the_first_row_outside_the_domain() -> None:
    job, block = _block([0.5 + i / 100 for i in range(100)] + [-1.0, -2.0], range(2, 104))
    findings = Findings()
    said = findings.add(block, lambda i: f"line {block.chunk.lines[i]}", job.tol, expected=1.0)
    assert len(said) == MAX_NOTES and all(n[0].startswith("line ") and "--expect failed" in n[0] for n in said)
    notes: list[str] = []
    with pytest.raises(NotFinite, match=r"^line 102: .*log.* \(2 such rows in all\)$"):
        findings.finish(notes.append)
    # 1/x misses 1.0 on every row but x = 1.0 (and the two outside the domain are not compared)
    assert notes == ["99 rows failed the check or --expect in all (the first 10 are named above)"]


def test_findings_merge_in_input_order() -> None:
    job, first = _block([2.0, 3.0], range(2, 4))
    _, second = _block([-1.0, 4.0], range(4, 6))
    a, b = Findings(), Findings()
    a.add(first, lambda i: f"line {first.chunk.lines[i]}", job.tol, expected=None)
    b.add(second, lambda i: f"line {second.chunk.lines[i]}", job.tol, expected=None)
    assert a.merge(b) == [] and (a.bad, a.failed) == (1, 0)
    with pytest.raises(NotFinite, match=r"^line 4: "):
        a.finish(lambda _: None)
