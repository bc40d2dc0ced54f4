"""Coverage-guided fuzzing of the parser and the pipeline with atheris (libFuzzer); not run in CI.

    pip install atheris
    python bench/fuzz_atheris.py -max_total_time=3600 -timeout=2 -rss_limit_mb=1024

The property holds as in tests/test_fuzz.py: any text parses or raises a user error (InputError, or
NotFinite for a constant outside the reals), and a parsed expression differentiates at a point or
raises a GradcliError. Anything else, a hang (-timeout) or memory beyond -rss_limit_mb is a crash
that libFuzzer saves as crash-*/timeout-* files to replay with ``python bench/fuzz_atheris.py FILE``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import gradcli
    from gradcli.errors import GradcliError, InputError, NotFinite
    from gradcli.parse import parse_expr


def fuzz_one_input(data: bytes) -> None:
    """One fuzz input: text for EXPR, then a few bytes choosing the order and the point."""
    fdp = atheris.FuzzedDataProvider(data)
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 300))
    try:
        expr = parse_expr(text)
    except (InputError, NotFinite):
        return
    names = sorted(str(s) for s in expr.free_symbols)
    if not names:
        return
    at = {n: fdp.ConsumeFloatInRange(-10.0, 10.0) for n in names}
    wrt = [names[fdp.ConsumeIntInRange(0, len(names) - 1)] for _ in range(fdp.ConsumeIntInRange(1, 4))]
    try:
        gradcli.derivative(text, wrt=wrt, at=at)
    except GradcliError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, fuzz_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
