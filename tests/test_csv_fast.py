"""The vectorised CSV writer for --points chunks writes exactly what the row-by-row writer writes."""

from __future__ import annotations

import pytest

from gradcli.cli import main
from gradcli.render import Renderer


def _both(capsys, monkeypatch, argv: list[str]) -> tuple[str, str]:
    code = main(argv)
    fast = capsys.readouterr().out
    monkeypatch.setattr(Renderer, "_csv_block",
                        lambda self, block: [self._row_csv(block.row(i)) for i in range(block.chunk.size)])
    assert main(argv) == code
    slow = capsys.readouterr().out
    return fast, slow


@pytest.mark.parametrize(
    "args",
    [
        ["d", "x*exp(-(x^2+y^2))*sin(3*y)", "--wrt", "x,y"],
        ["d", "log(x)*y", "--wrt", "x"],  # rows outside the domain: nan and empty check cells
        ["grad", "x*y+sin(x)"],
        ["hessian", "x*y**2"],
        ["taylor", "exp(x*y)", "--wrt", "x", "--order", "3"],
        ["d", "x*y", "--wrt", "x", "--no-check"],
    ],
)
def test_fast_csv_equals_row_by_row(tmp_path, capsys, monkeypatch, args):
    path = tmp_path / "p.csv"
    rows = [(i / 7 - 3, (i % 5) / 3 - 0.5) for i in range(150)]  # > 64 rows: the vectorised path
    path.write_text("x,y\n" + "\n".join(f"{a!r},{b!r}" for a, b in rows) + "\n")
    fast, slow = _both(capsys, monkeypatch, [*args, "--points", str(path), "--format", "csv"])
    assert fast == slow and fast.count("\n") == 151
