"""Every exercise solution in the lessons runs, and the numbers its explanation states are what it prints.

A solution is a ``<details>`` block in a markdown cell, holding one ```python block (self-contained: its
own imports) and the explanation a student reads after running it. The test runs each block in a fresh
namespace, from the notebooks folder (as the lesson does), and checks the explanation's result-like
numbers against the printed output (tests/prose_numbers.py's rules).
"""
import contextlib
import io
import json
import os
import re
from pathlib import Path

import pytest

from prose_numbers import backed, claims, numbers_in

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
_DETAILS = re.compile(r"<details>(.*?)</details>", re.S)
_CODE = re.compile(r"```python\n(.*?)```", re.S)


def solutions(path: Path) -> list[tuple[str, str, str]]:
    """(id, code, explanation) for every solution block of a lesson."""
    found = []
    for index, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        for k, block in enumerate(_DETAILS.findall("".join(cell["source"]))):
            code = _CODE.findall(block)
            assert len(code) == 1, f"{path.name} cell {index}: a solution holds exactly one ```python block"
            found.append((f"{path.stem[:2]}-c{index}-{k}", code[0], _CODE.sub(" ", block)))
    return found


ALL = [s for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) for s in solutions(path)]


def test_lessons_have_exercises():
    lessons = {ident[:2] for ident, _, _ in ALL}
    assert {p.stem[:2] for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")} == lessons  # every lesson has exercises


@pytest.mark.parametrize("ident,code,explanation", ALL, ids=[s[0] for s in ALL])
def test_solution_runs_and_its_explanation_matches_its_output(ident, code, explanation):
    out = io.StringIO()
    cwd = os.getcwd()
    try:
        os.chdir(NOTEBOOKS)
        with contextlib.redirect_stdout(out):
            exec(compile(code, ident, "exec"), {"__name__": "__solution__"})
    finally:
        os.chdir(cwd)
    printed = numbers_in(out.getvalue())
    stale = [c for c in claims(explanation) if not backed(c, printed)]
    assert not stale, f"{ident}: the explanation states {stale}, which the solution does not print:\n{out.getvalue()}"
